"""Kernels take their inputs grouped by concept (named tuples of arrays and scalars), not as long
flat lists: no numba kernel takes more than 25 parameters. Read from the sources, so a kernel
that grows past the bound fails here before anybody calls it."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest

import telcosim.sim.kernels
from telcosim.sim.kernels import mobility, sessions

KERNELS = Path(telcosim.sim.kernels.__file__).resolve().parent
MAX_PARAMETERS = 25


def _is_njit(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name in {"njit", "jit", "generated_jit", "vectorize", "guvectorize"}


def _kernels(path: Path) -> list[tuple[str, int]]:
    """(name, parameter count) of each numba-decorated function in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef) and any(_is_njit(d) for d in node.decorator_list):
            a = node.args
            count = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
            out.append((node.name, count))
    return out


SOURCES = sorted(KERNELS.glob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_no_kernel_takes_more_than_25_parameters(path):
    too_long = [f"{name} ({n})" for name, n in _kernels(path) if n > MAX_PARAMETERS]
    assert not too_long, f"{path.name}: {', '.join(too_long)} take more than {MAX_PARAMETERS} parameters: group them"


def test_the_check_sees_the_kernels():
    names = {name for p in SOURCES for name, _ in _kernels(p)}
    assert {"mobility_epoch", "sessions_epoch", "volume_levels", "attempt_cells", "seed_state", "resolve_epoch",
            "change_cells"} <= names


def test_grouped_inputs_pickle():
    """Shards are built on remote workers from pickled inputs: the groups travel as they are."""
    a = np.arange(3.0)
    for group in (mobility.CellMap(a, a, a, a, a), mobility.MobilityEpoch(1, 0, 900_000, True, a, a),
                  sessions.SessionEpoch(1, 0, 900_000, False, a, a, a, 0.5)):
        back = pickle.loads(pickle.dumps(group))
        assert type(back) is type(group) and back._fields == group._fields
        for x, y in zip(back, group, strict=True):
            np.testing.assert_array_equal(x, y)
