"""``telcosim scenario check/list/show`` and ``telcosim run`` with built-ins and extends; bad
scenario files, hand-made and generated, refused with exit 2 and one line per problem naming its
file and dotted key, never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telcosim import scenarios
from telcosim.cli import main
from telcosim.sim import config

BUILTINS = ("normal_weekday", "small_city", "weekend")


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _run_quiet(argv):
    """main() with its output captured without pytest fixtures (for hypothesis)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def _error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line]
    assert all(line.startswith("telcosim: error: ") for line in lines), err
    return [line.removeprefix("telcosim: error: ") for line in lines]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- list, show, check ---------------------------------------------------------------------------

def test_list(capsys):
    code, out, err = _run(["scenario", "list"], capsys)
    assert code == 0 and not err
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == scenarios.builtin_names()
    for (name, description), line in zip(scenarios.describe_builtins(), lines, strict=True):
        assert line.startswith(name) and line.endswith(description)


@pytest.mark.parametrize("name", BUILTINS)
def test_show_builtin(capsys, name):
    code, out, err = _run(["scenario", "show", name], capsys)
    assert code == 0 and not err
    shown = tomllib.loads(out)
    sc = scenarios.load(name)
    assert shown["name"] == name and shown["time"]["days"] == sc.time.days
    # Every key, with nothing left for a default to fill in (NaN keys, and network keys that
    # have no effect with the layout, are comments).
    idle = set(config.idle_network_keys(sc))
    assert idle and all(f"# {k} = " in out for k in idle)
    full = sc.to_dict()
    for section, table in full.items():
        if isinstance(table, dict):
            missing = [k for k, v in table.items() if k not in shown[section] and v == v
                       and not (section == "network" and k in idle)]
            assert not missing, (section, missing)


def test_show_resolves_extends_and_overrides(tmp_path, capsys):
    f = _write(tmp_path / "w.toml", "extends = 'weekend'\nname = 'w'\n[network]\nsites = 60\n")
    code, out, _ = _run(["scenario", "show", str(f), "--set", "population.subscribers=700"], capsys)
    assert code == 0
    shown = tomllib.loads(out)
    assert "extends" not in shown
    assert (shown["name"], shown["network"]["sites"], shown["population"]["subscribers"]) == ("w", 60, 700)
    assert shown["time"]["start"] == "2024-03-09T00:00:00" and shown["time"]["days"] == 2
    # What show prints is a scenario file that loads to the same scenario.
    again = _write(tmp_path / "again.toml", out)
    assert json.dumps(scenarios.load(again).to_dict()) == json.dumps(
        scenarios.load(f, ["population.subscribers=700"]).to_dict())


def test_show_refuses_bad_input(tmp_path, capsys):
    code, out, err = _run(["scenario", "show", "nope"], capsys)
    assert code == 2 and not out
    assert _error_lines(err) == [f"nope: no such scenario file or built-in scenario (built-in scenarios: "
                                 f"{', '.join(scenarios.builtin_names())})"]
    f = _write(tmp_path / "bad.toml", "extends = 'small_city'\n[network]\nsites = 0\n")
    code, out, err = _run(["scenario", "show", str(f)], capsys)
    assert code == 2 and not out
    assert _error_lines(err) == ["bad.toml: network.sites: 0 is out of range (must be >= 1)"]


def test_check_good_and_bad(tmp_path, capsys):
    good = _write(tmp_path / "good.toml", "extends = 'small_city'\n[population]\nsubscribers = 100\n")
    bad = _write(tmp_path / "bad.toml", "[network]\nsites = 0\nsectrs = 3\n")
    code, out, err = _run(["scenario", "check", str(good), *BUILTINS], capsys)
    assert code == 0 and not err
    assert out.splitlines() == [f"{good}: ok", *(f"{n}: ok" for n in BUILTINS)]
    code, out, err = _run(["scenario", "check", str(good), str(bad), "weekend"], capsys)
    assert code == 2
    assert out.splitlines() == [f"{good}: ok", "weekend: ok"]
    assert _error_lines(err) == ["bad.toml: network.sites: 0 is out of range (must be >= 1)",
                                 "bad.toml: network.sectrs: unknown key (did you mean 'sectors'?)"]
    # --set applies to each file checked.
    code, out, err = _run(["scenario", "check", str(good), "small_city", "--set", "time.days=0"], capsys)
    assert code == 2 and not out
    assert _error_lines(err) == ["good.toml: time.days: 0 is out of range (must be >= 1)",
                                 "builtin:small_city: time.days: 0 is out of range (must be >= 1)"]


def test_check_reads_the_cells_csv(tmp_path, capsys):
    _write(tmp_path / "lib" / "cells.csv", "cell_id,lat,lon\nA,45,9\nB,95,9\n")
    _write(tmp_path / "lib" / "base.toml", "[network]\nlayout = 'csv'\ncells_csv = 'cells.csv'\n")
    f = _write(tmp_path / "c.toml", "extends = 'lib/base.toml'\n")
    code, out, err = _run(["scenario", "check", str(f)], capsys)
    assert code == 2 and not out
    assert _error_lines(err) == ["cells.csv: line 3: lat: 95.0 is out of range (-90..90)"]


@pytest.mark.parametrize("argv,needle", [
    (["scenario"], "the following arguments are required"),
    (["scenario", "check"], "the following arguments are required: FILE"),
    (["scenario", "show"], "the following arguments are required: NAME"),
    (["scenario", "frob"], "invalid choice: 'frob'"),
    (["scenario", "list", "extra"], "unrecognized arguments: extra"),
])
def test_scenario_usage_errors(capsys, argv, needle):
    code, _, err = _run(argv, capsys)
    assert code == 2
    (line,) = _error_lines(err)
    assert needle in line


# -- run -----------------------------------------------------------------------------------------

def test_run_a_builtin_by_name(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _run(["run", "small_city", "--out", str(out), "--subscribers", "200", "--quiet"], capsys)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scenario"]["name"] == "small_city"
    assert manifest["scenario"]["network"]["layout"] == "hex" and manifest["scenario"]["population"]["subscribers"] == 200


def test_run_follows_extends(tmp_path, capsys):
    f = _write(tmp_path / "w.toml", "extends = 'weekend'\nname = 'w'\n[network]\nsites = 20\n")
    out = tmp_path / "run"
    code, _, err = _run(["run", str(f), "--out", str(out), "--subscribers", "200", "--days", "1", "--quiet"], capsys)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scenario"]["name"] == "w" and manifest["scenario"]["network"]["sites"] == 20
    assert manifest["window"]["start"].startswith("2024-03-09T00:00:00")  # the weekend's Saturday


# -- bad scenario files --------------------------------------------------------------------------

HAND_MADE = [
    ("extends = 'small_city'\nseed = 'one'\n[time]\ndays = 400\n",
     ["bad.toml: seed: 'one' is not an integer", "bad.toml: time.days: 400 is out of range (must be <= 366)"]),
    ("extends = 'weekend'\n[network]\nlayout = 'ring'\ndimensioning = 'fixed'\nvoice_channels = { urban = 2.5, centre = 3 }\n",
     ["bad.toml: network.layout: 'ring' is not allowed (choose one of 'hex', 'random', 'csv')",
      "bad.toml: network.voice_channels.centre: unknown key (allowed: urban, suburban, rural)",
      "bad.toml: network.voice_channels.urban: 2.5 is not a whole number of channels"]),
    ("extends = 'normal_weekday'\npopulation = 5\n", ["bad.toml: population: 5 is not a table"]),
    ("extends = 'normal_weekday'\n[behavior]\nvoice_per_day = 1\n",
     ["bad.toml: behavior: unknown key (did you mean 'behaviour'?)"]),
    ("extends = 7\n[network]\nsites = 0\n", ["bad.toml: extends: 7 is not a string"]),
    ("extends = 'weekday'\n", ["bad.toml: extends: 'weekday': no such built-in scenario or file"]),
    ("extends = 'bad.toml'\n", ["bad.toml: extends: 'bad.toml' makes a cycle (bad.toml -> bad.toml)"]),
    ("extends = 'small_city'\n[time\n", ["bad.toml: not valid TOML"]),
]


@pytest.mark.parametrize("text,needles", HAND_MADE)
def test_bad_files_hand_made(tmp_path, capsys, text, needles):
    bad = _write(tmp_path / "bad.toml", text)
    for argv in (["scenario", "check", str(bad)], ["run", str(bad), "--out", str(tmp_path / "out")]):
        code, out, err = _run(argv, capsys)
        assert code == 2 and not out
        lines = _error_lines(err)
        assert len(lines) == len(needles), lines
        for needle in needles:
            assert any(needle in line for line in lines), (needle, lines)
    assert not (tmp_path / "out").exists()


# (dotted key, TOML value, what the message says): each fails on its own and sets off no
# cross-key check, so a file holding any of them has exactly one problem per entry.
BAD_ENTRIES = [
    ("seed", "-1", "out of range"), ("seed", "1.5", "is not an integer"),
    ("name", "3", "is not a string"), ("colour", "'red'", "unknown key"),
    ("time.days", "0", "out of range"), ("time.days", "'two'", "is not an integer"),
    ("time.timezone", "'Mars/Base'", "is not an IANA time zone"), ("time.start", "'soon'", "is not an ISO date-time"),
    ("time.length", "3", "unknown key"),
    ("network.sites", "'many'", "is not an integer"), ("network.sectors", "7", "out of range"),
    ("network.layout", "'ring'", "is not allowed"), ("network.radius_km", "0", "out of range"),
    ("network.sitez", "3", "unknown key"), ("network.voice_channels.urban", "-1", "out of range"),
    ("network.data_mbps.sideways", "1", "unknown key"), ("network.data_mbps.rural", "0", "out of range"),
    ("population.subscribers", "0", "out of range"), ("population.commuter_share", "1.5", "out of range"),
    ("population.subscriber", "10", "unknown key"), ("population.home_weight", "2", "is not a table"),
    ("behaviour.voice_per_day", "-2", "out of range"), ("behaviour.onnet_share", "true", "is not a number"),
    ("behaviour.profile", "[1]", "is not a string"), ("behaviour.call_duration_log_sigma", "-1", "out of range"),
    ("mobility.stickiness", "2", "out of range"), ("mobility.speed", "3", "unknown key"),
    ("output.compression", "'brotli'", "is not allowed"), ("output.kpi_interval_s", "700", "does not divide 3600"),
    ("output.kpi_interval_s", "30", "out of range"),
]
BAD_EXTENDS = [("7", "is not a string"), ("''", "is empty"), ("'weekdy'", "no such built-in scenario"),
               ("'missing/base.toml'", "no such scenario file"), ("'child.toml'", "makes a cycle")]


def _toml(entries) -> str:
    top = [f"{k} = {v}" for k, v in entries if "." not in k]
    sections: dict[str, list[str]] = {}
    for k, v in entries:
        if "." in k:
            section, rest = k.split(".", 1)
            sections.setdefault(section, []).append(f"{rest} = {v}")
    return "\n".join(top + [f"[{s}]\n" + "\n".join(lines) for s, lines in sections.items()]) + "\n"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(st.tuples(st.sampled_from(BAD_ENTRIES), st.booleans()), min_size=1, max_size=8,
                        unique_by=lambda e: e[0][0]),
       parent=st.sampled_from(["none", "file", "weekend"]),
       bad_extends=st.one_of(st.none(), st.sampled_from(BAD_EXTENDS)))
def test_bad_files_generated(entries, parent, bad_extends):
    """Random bad files, optionally inheriting some of their bad keys from a parent file: each
    problem is listed once, with its dotted key and the file that wrote it."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        in_parent = [e for e, up in entries if up and parent == "file"]
        in_child = [e for e, up in entries if not (up and parent == "file")]
        head = ""
        if bad_extends is not None:
            head = f"extends = {bad_extends[0]}\n"
        elif parent == "file":
            _write(d / "base.toml", _toml([(k, v) for k, v, _ in in_parent]))
            head = "extends = 'base.toml'\n"
        elif parent == "weekend":
            head = "extends = 'weekend'\n"
        _write(d / "child.toml", head + _toml([(k, v) for k, v, _ in in_child]))
        code, out, err = _run_quiet(["scenario", "check", str(d / "child.toml")])
        assert code == 2 and not out
        lines = _error_lines(err)
        if bad_extends is not None:  # reported on its own: nothing else can be checked
            assert len(lines) == 1 and lines[0].startswith("child.toml: extends: ") and bad_extends[1] in lines[0]
            return
        assert len(lines) == len(entries), lines
        for key, _, what in in_child:
            assert any(line.startswith(f"child.toml: {key}: ") and what in line for line in lines), (key, lines)
        for key, _, what in in_parent:
            assert any(line.startswith(f"base.toml: {key}: ") and what in line
                       and line.endswith("(inherited by child.toml)") for line in lines), (key, lines)
        # The run command refuses the same file with the same lines, and writes nothing.
        code, out, err2 = _run_quiet(["run", str(d / "child.toml"), "--out", str(d / "out")])
        assert code == 2 and sorted(_error_lines(err2)) == sorted(lines)
        assert not (d / "out").exists()


def test_console_script(tmp_path):
    """The installed entry point: exit codes, and no traceback for a bad file."""
    script = shutil.which("telcosim", path=str(Path(sys.executable).parent))
    cmd = [script] if script else [sys.executable, "-m", "telcosim.cli"]
    bad = _write(tmp_path / "bad.toml", "extends = 'weekend'\n[network]\nsites = 0\n[time]\nday = 2\n")
    proc = subprocess.run([*cmd, "scenario", "check", "small_city", str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "small_city: ok\n"
    assert sorted(_error_lines(proc.stderr)) == ["bad.toml: network.sites: 0 is out of range (must be >= 1)",
                                                 "bad.toml: time.day: unknown key (did you mean 'days'?)"]
    proc = subprocess.run([*cmd, "scenario", "list"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and all(n in proc.stdout for n in BUILTINS)
