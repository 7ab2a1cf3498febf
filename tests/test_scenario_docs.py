"""docs/scenario-format.md keeps up with sim/config.py: every knob has a row with its current
default, no row names a knob that does not exist, and "The defaults, as a file" loads to exactly
the default scenario."""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import typing
from pathlib import Path

from telcosim.sim import config

DOC = Path(__file__).resolve().parents[1] / "docs" / "scenario-format.md"
SECTIONS = ("time", "network", "population", "behaviour", "mobility", "output")


def _knobs() -> dict[str, dict[str, object]]:
    """section -> {dotted key within the section: default}"""
    hints = typing.get_type_hints(config.Scenario)
    out = {}
    for sec in SECTIONS:
        cls = hints[sec]
        obj = cls()
        keys = {}
        for f in dataclasses.fields(cls):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                for g in dataclasses.fields(v):
                    keys[f"{f.name}.{g.name}"] = getattr(v, g.name)
            else:
                keys[f.name] = v
        out[sec] = keys
    return out


def _doc_rows() -> dict[str, dict[str, str]]:
    """section -> {key: default cell text} from the '### [section]' tables."""
    text = DOC.read_text(encoding="utf-8")
    out = {}
    for sec in SECTIONS:
        body = text.split(f"### [{sec}]", 1)[1].split("\n### ", 1)[0]
        rows = {}
        for line in body.splitlines():
            m = re.match(r"\| `([a-z_.]+)` \| [a-z]+ \| `([^`]*)` \|", line)
            if m:
                rows[m.group(1)] = m.group(2)
        out[sec] = rows
    return out


def _shown(v) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return repr(v)


def test_every_knob_has_a_row_with_its_default():
    knobs, rows = _knobs(), _doc_rows()
    for sec in SECTIONS:
        assert set(rows[sec]) == set(knobs[sec]), (sec, sorted(set(rows[sec]) ^ set(knobs[sec])))
        for key, default in knobs[sec].items():
            assert rows[sec][key] == _shown(default), f"[{sec}] {key}: doc says {rows[sec][key]}, config {_shown(default)}"


def test_the_defaults_as_a_file_is_the_default_scenario():
    text = DOC.read_text(encoding="utf-8").split("### The defaults, as a file", 1)[1]
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    raw = tomllib.loads(block)
    assert config.from_dict(raw, "<doc>").to_dict() == config.load(None, []).to_dict()
