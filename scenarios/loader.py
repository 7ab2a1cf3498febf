"""Scenario files with inheritance, and the built-in scenarios.

A scenario file may say ``extends = "<built-in name or path>"`` at its top level. The parent is
loaded first (recursively, so chains work), then the child's keys are merged over it: tables are
merged key by key, any other value is replaced. ``--set`` overrides come last, and the result is
validated once by :func:`sim.config.from_dict`, so inheritance adds no rules of its own.

Each problem is reported against the file that wrote the bad key: a bad value inherited from a
parent names the parent and says which file inherited it. Relative paths (``network.cells_csv``,
``behaviour.profile``) written in an inherited file are made absolute against that file's folder
while merging; the loaded file's own relative paths resolve against it, as they always have.

Built-in scenarios are TOML files in ``scenarios/builtin/``; a reference without ``/`` or a
``.toml`` suffix that names one of them is that built-in, anything else is a path.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telcosim.sim import config
from telcosim.sim.config import Scenario, read_toml
from telcosim.sim.errors import ConfigError, TelcosimError
from telcosim.sim.network import build_network, load_cells_csv
from telcosim.sim.profile import load_profile
from telcosim.sim.streams import generator

from .incidents import parse

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
EXTENDS = "extends"
# Keys holding a path that is relative to the file that wrote it, and the values that are not paths.
_PATH_KEYS = {("network", "cells_csv"): ("",), ("behaviour", "profile"): ("default",), ("privacy_ledger",): ("",)}


def builtin_names() -> list[str]:
    """The names of the built-in scenarios, sorted."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def builtin_path(name: str) -> Path:
    return BUILTIN_DIR / f"{name}.toml"


def _builtins_hint(ref: str = "") -> str:
    close = difflib.get_close_matches(ref, builtin_names(), n=1) if ref else []
    mean = f"did you mean {close[0]!r}? " if close else ""
    return f"{mean}built-in scenarios: {', '.join(builtin_names())}"


def _looks_like_path(ref: str) -> bool:
    return "/" in ref or os.sep in ref or ref.endswith(".toml")


@dataclass
class _Layer:
    label: str  # how messages name the file
    path: Path  # resolved
    raw: dict[str, Any]  # its table, extends removed


def _resolve_ref(ref: str, base_dir: Path | None) -> tuple[Path, str | None]:
    """(path, built-in name or None) of a reference; paths are relative to ``base_dir``."""
    if not _looks_like_path(ref) and ref in builtin_names():
        return builtin_path(ref), ref
    p = Path(ref).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return p, None


def _read_table(path: Path, label: str, shown: str) -> dict[str, Any]:
    return read_toml(path, label, shown, _builtins_hint())


class _Chain:
    """Loads a file and its ancestors, root first."""

    def __init__(self, top_dir: Path) -> None:
        self.top_dir = top_dir

    def label(self, path: Path, builtin: str | None) -> str:
        if builtin is not None:
            return f"builtin:{builtin}"
        try:
            return os.path.relpath(path, self.top_dir)
        except ValueError:  # another drive
            return str(path)

    def layers(self, path: Path, label: str, shown: str, seen: list[tuple[Path, str]],
               inherited: bool = False) -> list[_Layer]:
        raw = _read_table(path, label, shown)
        if inherited:
            for section_key, not_paths in _PATH_KEYS.items():
                _absolutise(raw, section_key, not_paths, path.parent)
        seen = [*seen, (path.resolve(), label)]
        if EXTENDS not in raw:
            return [_Layer(label, path.resolve(), raw)]
        ref = raw.pop(EXTENDS)
        if not isinstance(ref, str) or not ref.strip():
            what = "is empty" if isinstance(ref, str) else "is not a string"
            raise ConfigError(f"{label}: {EXTENDS}: {ref!r} {what} (give the name of a built-in scenario "
                              f"or the path of a scenario file; {_builtins_hint()})")
        parent, builtin = _resolve_ref(ref, path.parent)
        parent_label = self.label(parent, builtin)
        if builtin is None and not parent.exists():
            kind = "no such scenario file" if _looks_like_path(ref) else "no such built-in scenario or file"
            raise ConfigError(f"{label}: {EXTENDS}: {ref!r}: {kind} ({_builtins_hint(ref)})")
        resolved = parent.resolve()
        if any(p == resolved for p, _ in seen):
            loop = " -> ".join([lab for _, lab in seen] + [parent_label])
            raise ConfigError(f"{label}: {EXTENDS}: {ref!r} makes a cycle ({loop})")
        above = self.layers(parent, parent_label, f"{label}: {EXTENDS}: {ref!r}", seen, inherited=True)
        return [*above, _Layer(label, path.resolve(), raw)]


def _absolutise(raw: dict[str, Any], keys: tuple[str, ...], not_paths: tuple[str, ...], base: Path) -> None:
    section: Any = raw
    for k in keys[:-1]:
        section = section.get(k) if isinstance(section, dict) else None
    if isinstance(section, dict):
        value = section.get(keys[-1])
        if isinstance(value, str) and value not in not_paths and not Path(value).expanduser().is_absolute():
            section[keys[-1]] = str((base / Path(value).expanduser()).resolve())


def _mark(value: Any, path: tuple[str, ...], label: str, prov: dict[tuple[str, ...], str]) -> None:
    for p in [p for p in prov if p[: len(path)] == path]:
        del prov[p]
    prov[path] = label
    if isinstance(value, dict):
        for k, v in value.items():
            _mark(v, (*path, k), label, prov)


def merge(base: dict[str, Any], over: dict[str, Any], label: str = "",
          prov: dict[tuple[str, ...], str] | None = None, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """Merge ``over`` into ``base`` in place: tables key by key, other values replaced. ``prov``
    records, for every dotted key, the label of the file that set it."""
    prov = {} if prov is None else prov
    for key, value in over.items():
        path = (*prefix, key)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value, label, prov, path)
        else:
            base[key] = copy.deepcopy(value)
            _mark(value, path, label, prov)
    return base


def _attribute(problems: list[str], top: str, prov: dict[tuple[str, ...], str]) -> list[str]:
    """Rewrite "top: key: ..." lines whose key was written in an inherited file."""
    out = []
    prefix = f"{top}: "
    for line in problems:
        if not line.startswith(prefix):
            out.append(line)
            continue
        rest = line[len(prefix):]
        # Every key a file wrote is recorded; one that nobody wrote (a cross-key check on a
        # default) stays with the loaded file.
        owner = prov.get(tuple(rest.split(": ", 1)[0].split(".")))
        out.append(line if owner in (None, top) else f"{owner}: {rest} (inherited by {top})")
    return out


def _parse_overrides(overrides: list[str] | None) -> list[tuple[list[str], Any]]:
    parsed, bad = [], []
    for o in overrides or []:
        try:
            parsed.append(config.parse_override(o))
        except ConfigError as exc:
            bad.extend(exc.problems)
    if bad:
        raise ConfigError(bad)
    return parsed


def _resolve(ref: str | Path, overrides: list[str] | None
             ) -> tuple[dict[str, Any], str, Path, dict[tuple[str, ...], str]]:
    parsed = _parse_overrides(overrides)
    text = str(ref)
    path, builtin = _resolve_ref(text, None)
    if builtin is None and not _looks_like_path(text) and not path.exists():
        raise ConfigError(f"{text}: no such scenario file or built-in scenario ({_builtins_hint(text)})")
    chain = _Chain(path.resolve().parent)
    label = f"builtin:{builtin}" if builtin is not None else path.name
    shown = text if builtin is None else label
    try:
        layers = chain.layers(path, label, shown, [])
    except ConfigError as exc:  # a problem in an inherited file: say which file inherits it
        raise ConfigError([line if line.startswith((f"{label}: ", f"{shown}: "))
                           else f"{line} (in a scenario that {label} extends)" for line in exc.problems]) from None
    raw: dict[str, Any] = {}
    prov: dict[tuple[str, ...], str] = {}
    for layer in layers:
        merge(raw, layer.raw, layer.label, prov)
    config.apply_overrides(raw, parsed)
    for keys, value in parsed:
        _mark(value, tuple(keys), label, prov)
    return raw, label, path.resolve(), prov


def resolve(ref: str | Path, overrides: list[str] | None = None) -> tuple[dict[str, Any], str, Path]:
    """The merged, overridden but unvalidated table of a scenario: (table, label, path)."""
    raw, label, path, _ = _resolve(ref, overrides)
    return raw, label, path


def load(ref: str | Path | None, overrides: list[str] | None = None) -> Scenario:
    """Load a scenario: a built-in name or a TOML path (None: the embedded default), its
    ``extends`` chain merged, then ``overrides`` (``dotted.key=value``) applied, then validated.
    Raises :class:`~sim.errors.ConfigError` listing every problem."""
    if ref is None:
        return config.load(None, overrides)
    raw, label, path, prov = _resolve(ref, overrides)
    try:
        sc = config.from_dict(raw, label, given=_given(overrides, label, prov))
    except ConfigError as exc:
        raise ConfigError(_attribute(exc.problems, label, prov)) from None
    sc = dataclasses.replace(sc, source=str(path))
    if sc.incidents:
        _check_incidents(sc, label, prov)
    return sc


def _given(overrides: list[str] | None, label: str, prov: dict[tuple[str, ...], str]) -> set[tuple[str, ...]]:
    """The keys the user wrote: the overrides, and the loaded file's own keys unless it is a
    built-in (whose keys the user cannot remove)."""
    given = {tuple(keys[: i + 1]) for keys, _ in _parse_overrides(overrides) for i in range(len(keys))}
    if not label.startswith("builtin:"):
        given |= {k for k, owner in prov.items() if owner == label}
    return given


def _check_incidents(sc: Scenario, label: str, prov: dict[tuple[str, ...], str]) -> None:
    """Incidents are checked against the scenario's network (cells and sites in range)."""

    net = build_network(sc.network, generator(sc.seed, "network.layout"), Path(sc.source).parent)
    try:
        parse(sc, net, label)
    except ConfigError as exc:
        owner = prov.get(("incidents",), label)
        raise ConfigError([line if owner == label else f"{owner}: {line[len(label) + 2:]} (inherited by {label})"
                           for line in exc.problems]) from None


def check(ref: str | Path, overrides: list[str] | None = None) -> list[str]:
    """Every problem of a scenario without running it: the file and its chain, and the input files
    it names (cells CSV, behaviour profile). Empty when sound."""
    try:
        sc = load(ref, overrides)
    except ConfigError as exc:
        return exc.problems
    base = Path(sc.source).parent
    problems: list[str] = []
    if sc.network.layout == "csv":
        csv = Path(sc.network.cells_csv).expanduser()
        try:
            load_cells_csv(csv if csv.is_absolute() else base / csv, sc.network)
        except TelcosimError as exc:
            problems.extend(exc.problems)
    if sc.behaviour.profile != "default":
        try:
            load_profile(sc.behaviour.profile, base)
        except TelcosimError as exc:
            problems.extend(exc.problems)
    return problems


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)  # finite here; repr round-trips and is valid TOML (1e-05, 1e+16)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def dumps(scenario: Scenario, header: str = "") -> str:
    """The scenario as TOML, every key: loading the text gives the same scenario. Unset (NaN)
    values, which TOML files cannot give, and network keys that have no effect with the
    scenario's layout (whose value then stays the default) are written as comments."""
    lines = [f"# {h}" for h in header.splitlines()]
    sections: list[tuple[str, dict[str, Any]]] = []
    incidents = []
    for key, value in scenario.to_dict().items():
        if key == "incidents":
            incidents = list(value)
            if not incidents:
                lines.append("incidents = []")
        elif isinstance(value, dict):
            sections.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    idle = config.idle_network_keys(scenario)
    for name, table in sections:
        lines += ["", f"[{name}]"]
        for key, value in table.items():
            if name == "network" and key in idle:
                lines.append(f"# {key} = {_toml_value(value)}   # no effect with {idle[key]}")
            elif isinstance(value, float) and math.isnan(value):
                lines.append(f"# {key} = nan   # unset: taken from the behaviour profile")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
    for inc in incidents:
        lines += ["", "[[incidents]]"] + [f"{k} = {_toml_value(v)}" for k, v in inc.items()]
    return "\n".join(lines) + "\n"


def describe_builtins() -> list[tuple[str, str]]:
    """(name, description) of each built-in scenario, after its extends chain."""
    return [(name, load(name).description) for name in builtin_names()]


__all__ = ["BUILTIN_DIR", "builtin_names", "builtin_path", "check", "describe_builtins", "dumps", "load",
           "merge", "resolve"]
