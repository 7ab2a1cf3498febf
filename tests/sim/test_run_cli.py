"""The command line: a good run, and bad input refused with one clear line per problem, exit 2,
no traceback and nothing left in --out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from telcosim.cli import main


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    return code, err


def _assert_refused(code, err, out: Path, *needles):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line]
    assert lines and all(line.startswith("telcosim: error:") for line in lines), err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_run_default_small(tmp_path, capsys):
    out = tmp_path / "run"
    code, _ = _run(["run", "--out", str(out), "--subscribers", "300", "--quiet"], capsys)
    assert code == 0
    assert (out / "manifest.json").exists() and (out / "cdr").is_dir()
    # An existing folder is not overwritten silently.
    code, err = _run(["run", "--out", str(out), "--subscribers", "300", "--quiet"], capsys)
    assert code == 2 and "already exists" in err


@pytest.mark.parametrize("argv,needle", [
    (["run", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["run", "--subscribers", "0"], "0 is out of range (must be a positive integer)"),
    (["run", "--subscribers", "-5"], "must be a positive integer"),
    (["run", "--days", "x"], "'x' is not an integer"),
    (["run", "--set", "network.sites"], "expected dotted.key=value"),
    (["run", "--set", "network.sitez=3"], "network.sitez: unknown key (did you mean 'sites'?)"),
    (["run", "--set", "network.layout='ring'"], "network.layout: 'ring' is not allowed"),
    (["run", "--set", "population.subscribers='many'"], "population.subscribers: 'many' is not an integer"),
    (["run", "--set", "network.radius_km=nan"], "network.radius_km: nan is not a finite number"),
    (["run", "--workers", "2", "--scheduler", "tcp://x:1"], "not allowed with argument"),
])
def test_bad_options(tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    code, err = _run([*argv, "--out", str(out)], capsys)
    _assert_refused(code, err, out, needle)


@pytest.mark.parametrize("text,needles", [
    ("seed = 1\n[network\nsites = 3\n", ["bad.toml: not valid TOML"]),
    ("[network]\nsites = 'three'\nsectrs = 3\n[time]\ndays = 0\n",
     ["bad.toml: network.sites: 'three' is not an integer", "bad.toml: network.sectrs: unknown key (did you mean 'sectors'?)",
      "bad.toml: time.days: 0 is out of range (must be >= 1)"]),
    ("[time]\ntimezone = 'Mars/Olympus'\nstart = 'yesterday'\n",
     ["time.timezone: 'Mars/Olympus' is not an IANA time zone", "time.start: 'yesterday' is not an ISO date-time"]),
    ("network = 3\n", ["bad.toml: network: 3 is not a table"]),
    ("[network]\nlayout = 'csv'\n", ["network.cells_csv: required when network.layout = 'csv'"]),
    ("[output]\nkpi_interval_s = 700\n", ["output.kpi_interval_s: 700 does not divide 3600"]),
])
def test_bad_scenario_files(tmp_path, capsys, text, needles):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    out = tmp_path / "out"
    code, err = _run(["run", str(bad), "--out", str(out)], capsys)
    _assert_refused(code, err, out, *needles)
    # Every problem is reported, one per line.
    assert len(err.strip().splitlines()) == len(needles)


def test_unreadable_scenario(tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _run(["run", str(tmp_path / "missing.toml"), "--out", str(out)], capsys)
    _assert_refused(code, err, out, "missing.toml: no such scenario file")
    code, err = _run(["run", str(tmp_path), "--out", str(out)], capsys)
    _assert_refused(code, err, out, "cannot read the scenario file")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    code, err = _run(["run", str(binary), "--out", str(out)], capsys)
    _assert_refused(code, err, out, "bin.toml")


def _cells_scenario(tmp_path: Path, csv_text: str) -> Path:
    (tmp_path / "cells.csv").write_text(csv_text)
    sc = tmp_path / "city.toml"
    sc.write_text("[network]\nlayout = 'csv'\ncells_csv = 'cells.csv'\n[population]\nsubscribers = 200\n")
    return sc


def test_cells_csv_good(tmp_path, capsys):
    rows = ["cell_id,lat,lon,site_id,azimuth_deg,voice_channels"]
    for i in range(12):
        site = i // 3
        rows.append(f"C{i},{45.0 + 0.01 * site},{9.0 + 0.013 * (site % 2)},S{site},{(i % 3) * 120},{8 + i}")
    sc = _cells_scenario(tmp_path, "\n".join(rows) + "\n")
    out = tmp_path / "out"
    code, err = _run(["run", str(sc), "--out", str(out), "--quiet"], capsys)
    assert code == 0, err
    import pyarrow.parquet as pq

    cells = pq.read_table(out / "cells.parquet")
    assert cells.column("source_id").to_pylist() == [f"C{i}" for i in range(12)]
    assert cells.column("voice_channels").to_pylist() == [8 + i for i in range(12)]
    assert cells.column("site_id").to_pylist() == [i // 3 for i in range(12)]


@pytest.mark.parametrize("csv_text,needles", [
    ("cell,lat\nA,45\n", ["cells.csv: missing column(s) cell_id, lon"]),
    ("cell_id,lat,lon\nA,45,9\nB,45.1,9\nA,45.2,9\n", ["cells.csv: line 4: cell_id 'A' duplicates line 2"]),
    ("cell_id,lat,lon,voice_channels\nA,north,9,4\nB,95,9,0\nC,45,9,2.5\n",
     ["line 2: lat: 'north' is not a number", "line 3: lat: 95.0 is out of range", "line 3: voice_channels: 0.0 is out of range",
      "line 4: voice_channels: 2.5 is not a whole number"]),
    ("", ["cells.csv: no cells"]),
])
def test_bad_cells_csv(tmp_path, capsys, csv_text, needles):
    sc = _cells_scenario(tmp_path, csv_text)
    out = tmp_path / "out"
    code, err = _run(["run", str(sc), "--out", str(out)], capsys)
    _assert_refused(code, err, out, *needles)


def test_console_script_exit_code(tmp_path):
    """The installed entry point itself: exit 2 and no traceback."""
    proc = subprocess.run([sys.executable, "-m", "telcosim.cli", "run", "--out", str(tmp_path / "o"), "--subscribers", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "must be a positive integer" in proc.stderr
