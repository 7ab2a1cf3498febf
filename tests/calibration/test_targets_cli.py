"""``telcosim targets``: a run on real data writes the document; bad input gives one line per
problem on stderr, exit 2, no traceback and no output file."""

from __future__ import annotations

import argparse
import json

import pytest

from telcosim.cli import main as sim_main
from telcosim.cli import targets as cli
from telcosim.cli.args import EXIT_USAGE
from tests.conftest import SHARED_DATA

needs_data = pytest.mark.skipif(not (SHARED_DATA / "README.md").is_file(), reason="shared data not present")


def parse(argv):
    p = argparse.ArgumentParser(prog="telcosim")
    sub = p.add_subparsers(dest="command", required=True)
    cli.add_parser(sub)
    return p.parse_args(argv)


@needs_data
def test_targets_on_real_data(tmp_path, capsys):
    out = tmp_path / "targets.json"
    args = parse(["targets", "--data", f"shares={SHARED_DATA / 'nodobo'}",
                  "--data", f"edges={SHARED_DATA / 'copenhagen'}", "--epsilon", "1", "--delta", "1e-6",
                  "--out", str(out)])
    assert cli.run(args) == 0
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 1 and set(doc["sources"]) == {"shares", "edges"}
    assert doc["sources"]["edges"]["level"] == "individual" and doc["sources"]["shares"]["level"] == "aggregate"
    spent = doc["privacy"]["spent"]
    assert 0 < spent["epsilon"] <= 1 + 1e-9 and 0 < spent["delta"] <= 1e-6
    assert {e["mechanism"] for e in doc["privacy"]["releases"]} >= {"gaussian"}
    assert "wrote" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*partial"))


def test_standalone_main_on_a_run(small_run, tmp_path):
    _, run_dir, _ = small_run
    out = tmp_path / "t.json"
    assert sim_main(["targets", "--data", f"cdr={run_dir}", "--epsilon", "2", "--disjoint-sources",
                     "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["privacy"]["disjoint_sources"] is True
    assert doc["privacy"]["spent"]["epsilon"] == pytest.approx(2.0)


def test_bad_files_one_line_per_problem(tmp_path, capsys):
    calls = tmp_path / "calls.csv"
    calls.write_text("Source;Target;Weight\n1;2;-5\n3;;7\n")
    act = tmp_path / "a.csv"
    act.write_text("hour,1\nyesterday,3\n")
    out = tmp_path / "t.json"
    args = parse(["targets", "--data", f"edges={calls}", "--data", f"activity={act}",
                  "--data", f"cells={tmp_path / 'missing'}", "--epsilon", "1", "--out", str(out)])
    assert cli.run(args) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4, err
    assert all(line.startswith("telcosim: error: ") for line in err)
    assert any("calls.csv" in x and "'Weight'" in x and "-5" in x for x in err)
    assert any("calls.csv" in x and "'Target'" in x for x in err)
    assert any("a.csv" in x and "'yesterday'" in x for x in err)
    assert any("missing" in x and "no such file" in x for x in err)
    assert "Traceback" not in "\n".join(err) and not out.exists()


def test_option_problems(tmp_path, capsys):
    args = parse(["targets", "--data", f"edges={tmp_path}", "--data", f"edges={tmp_path}", "--tz", "Nowhere/X",
                  "--holidays", "2024-13-01", "--out", str(tmp_path / "no" / "t.json")])
    assert cli.run(args) == 2
    err = capsys.readouterr().err
    for needle in ("given 2 times", "--epsilon is required", "'Nowhere/X'", "'2024-13-01'", "does not exist"):
        assert needle in err, (needle, err)


@pytest.mark.parametrize("argv, needle", [
    (["targets", "--data", "nokind", "--epsilon", "1", "--out", "x.json"], "KIND=PATH"),
    (["targets", "--data", "weird=x", "--epsilon", "1", "--out", "x.json"], "unknown data kind"),
    (["targets", "--data", "edges=x", "--epsilon", "-1", "--out", "x.json"], "positive"),
    (["targets", "--data", "edges=x", "--epsilon", "1", "--delta", "2", "--out", "x.json"], "between 0 and 1"),
])
def test_argument_errors_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as info:
        sim_main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_too_small_to_split_names_part_all(tmp_path, capsys):
    """Targets come from the fit part; a set whose units all land in one part is refused with a
    pointer to --part all, which then uses every row and records it."""
    e = tmp_path / "e"
    e.mkdir()
    (e / "calls.csv").write_text("Source;Target;Weight\n1;2;30\n")
    out = tmp_path / "t.json"
    assert cli.run(parse(["targets", "--data", f"edges={e}", "--epsilon", "1", "--out", str(out)])) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "too few to split; use --part all" in err[0] and str(e) in err[0]
    assert not out.exists()
    assert cli.run(parse(["targets", "--data", f"edges={e}", "--epsilon", "1", "--part", "all",
                          "--out", str(out)])) == 0
    doc = json.loads(out.read_text())
    assert doc["split"]["part"] == "all" and doc["sources"]["edges"]["split"]["part"] == "all"
