"""``telcosim evaluate``: writes the report, the gate exits 1 naming the failing required metrics,
bad input gives one line per problem on stderr, exit 2, no traceback and nothing written."""

from __future__ import annotations

import argparse
import json

import pytest

from telcosim.cli import evaluate as cli
from telcosim.cli import main as sim_main
from telcosim.cli.args import EXIT_USAGE
from tests.conftest import SHARED_DATA

needs_data = pytest.mark.skipif(not (SHARED_DATA / "README.md").is_file(), reason="shared data not present")


def parse(argv):
    p = argparse.ArgumentParser(prog="telcosim")
    sub = p.add_subparsers(dest="command", required=True)
    cli.add_parser(sub)
    return p.parse_args(argv)


def test_report_against_another_run_and_gate_pass(small_run, small_run_b, tmp_path, capsys):
    _, run_dir, _ = small_run
    out = tmp_path / "rep"
    rc = cli.run(parse(["evaluate", "--synthetic", str(run_dir), "--real", f"cdr={small_run_b}", "--out", str(out),
                        "--gate", "--require", "hourly_profile.voice,sms_call_ratio", "--splits", "3",
                        "--part", "fit"]))
    text = capsys.readouterr()
    assert rc == 0, text.err
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["settings"]["part"] == "fit" and doc["real"]["cdr"]["part"]["part"] == "fit"
    assert "judged on the fit part" in text.out
    assert doc["summary"]["required"] == ["hourly_profile.voice", "sms_call_ratio"]
    assert doc["settings"]["splits"] == 3 and len(doc["metrics"]["sms_call_ratio"]["baseline"]["per_split"]) == 3
    assert (out / "report.html").is_file() and "gate: pass" in text.out and not text.err


@needs_data
def test_gate_fails_on_the_scrambled_run(wrong_run, tmp_path, capsys):
    out = tmp_path / "rep"
    rc = sim_main(["evaluate", "--synthetic", str(wrong_run), "--real", f"shares={SHARED_DATA / 'nodobo'}",
                   "--out", str(out), "--gate", "--require", "hourly_profile.voice,hourly_profile.sms"])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_GATE
    assert "required metric hourly_profile.voice fails" in err and "required metric hourly_profile.sms fails" in err
    assert (out / "report.html").is_file()  # the report is written whatever the gate says


@needs_data
def test_without_gate_a_failing_run_exits_0(wrong_run, tmp_path, capsys):
    rc = sim_main(["evaluate", "--synthetic", str(wrong_run), "--real", f"shares={SHARED_DATA / 'nodobo'}",
                   "--out", str(tmp_path / "rep")])
    assert rc == 0 and "failing: hourly_profile.voice" in capsys.readouterr().out


def _bad(argv, capsys, tmp_path):
    try:
        rc = sim_main(argv)
    except SystemExit as exc:  # argparse errors exit like sim/cli.py's parser
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == EXIT_USAGE
    assert "Traceback" not in err and not (tmp_path / "rep").exists()
    return [line for line in err.splitlines() if line]


def test_bad_input_one_line_per_problem(small_run, tmp_path, capsys):
    _, run_dir, _ = small_run
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("hour,a\nnot a time,-3\n")
    lines = _bad(["evaluate", "--synthetic", str(tmp_path / "missing"), "--real", f"activity={bad_csv}",
                  "--real", f"edges={tmp_path / 'nothing'}", "--require", "nope", "--out", str(tmp_path / "rep")],
                 capsys, tmp_path)
    assert all(line.startswith("telcosim: error: ") for line in lines)
    text = "\n".join(lines)
    assert "missing: no such run folder" in text and "unknown metric 'nope'" in text
    assert "bad.csv" in text and "not a time" in text
    assert "nothing: cannot read" in text


def test_bad_kind_duplicate_kind_and_not_a_run(small_run, tmp_path, capsys):
    _, run_dir, _ = small_run
    lines = _bad(["evaluate", "--synthetic", str(run_dir), "--real", "bogus=x", "--out", str(tmp_path / "rep")],
                 capsys, tmp_path)
    assert len(lines) == 1 and "unknown data kind 'bogus'" in lines[0]
    lines = _bad(["evaluate", "--synthetic", str(run_dir), "--real", f"cdr={run_dir}", "--real", f"cdr={run_dir}",
                  "--out", str(tmp_path / "rep")], capsys, tmp_path)
    assert lines == ["telcosim: error: --real cdr= given 2 times; give each kind once"]
    lines = _bad(["evaluate", "--synthetic", str(tmp_path), "--real", f"cdr={run_dir}", "--out",
                  str(tmp_path / "rep")], capsys, tmp_path)
    assert any("missing manifest.json" in line for line in lines) and any("missing cdr" in line for line in lines)
    (tmp_path / "file").write_text("x")
    lines = _bad(["evaluate", "--synthetic", str(run_dir), "--real", f"cdr={run_dir}", "--out",
                  str(tmp_path / "file")], capsys, tmp_path)
    assert lines == [f"telcosim: error: --out {tmp_path / 'file'} is a file; expected a folder for the report"]


def test_unreadable_cdr_parquet(small_run, tmp_path, capsys):
    _, run_dir, _ = small_run
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    lines = _bad(["evaluate", "--synthetic", str(run_dir), "--real", f"cdr={junk}", "--out", str(tmp_path / "rep")],
                 capsys, tmp_path)
    assert len(lines) == 1 and "junk.parquet" in lines[0] and "cannot read" in lines[0]


def test_utility_and_privacy_options_bad_input(small_run, tmp_path, capsys):
    _, run_dir, _ = small_run
    lines = _bad(["evaluate", "--synthetic", str(run_dir), "--real", f"cdr={run_dir}", "--utility",
                  "--privacy-split-seed", "3", "--privacy-canary-trials", "10", "--out", str(tmp_path / "rep")],
                 capsys, tmp_path)
    assert lines[0].startswith("telcosim: error: --utility: needs a real cell series")
    assert lines[1:] == ["telcosim: error: --privacy-split-seed: only with --privacy-real PATH",
                         "telcosim: error: --privacy-canary-trials: only with --privacy-real PATH"]
    lines = _bad(["evaluate", "--synthetic", str(run_dir), "--real", f"cdr={run_dir}", "--privacy-real",
                  str(tmp_path / "no_traces"), "--out", str(tmp_path / "rep")], capsys, tmp_path)
    assert len(lines) == 1 and "no_traces: cannot read" in lines[0]
    for opt, value in (("--privacy-epsilon", "-1"), ("--privacy-canary-trials", "x"), ("--utility-model", "svm")):
        lines = _bad(["evaluate", "--synthetic", str(run_dir), "--real", f"cdr={run_dir}", opt, value,
                      "--out", str(tmp_path / "rep")], capsys, tmp_path)
        assert any(opt in line for line in lines)


@needs_data
def test_utility_and_privacy_sections(small_run, tmp_path, capsys):
    _, run_dir, _ = small_run
    out = tmp_path / "rep"
    rc = sim_main(["evaluate", "--synthetic", str(run_dir), "--real", f"cells={SHARED_DATA / 'lte_cells'}",
                   "--utility", "--privacy-real", str(SHARED_DATA / "studentlife_gps"), "--tz", "America/New_York",
                   "--privacy-canary-trials", "40", "--privacy-persons", "300", "--out", str(out), "--gate",
                   "--require", "hourly_profile.data"])
    text = capsys.readouterr()
    doc = json.loads((out / "metrics.json").read_text())
    u, p = doc["utility"], doc["privacy"]
    assert u["summary"]["evaluated"] == 0 and {t["status"] for t in u["tasks"].values()} == {"not_evaluated"}
    assert u["outage_detector"]["status"] == "not_evaluated"
    assert p["records"]["synthetic"] == 300 and p["canary"]["trials"] == 40 and p["split"]["seed"] == 20240305
    assert p["ledger"]["present"] is False and p["summary"]["evaluated"] == 7
    assert "utility: 0 of 0 evaluated forecasting tasks" in text.out and "privacy: " in text.out
    page = (out / "report.html").read_text()
    for anchor in ("id='utility'", "id='privacy'", "id='utility-card'", "id='privacy-card'", "Distance to closest record",
                   "risk = (main - control) / (1 - control) (1)"):
        assert anchor in page
    # the gate fails when a privacy check flags high risk, passes otherwise (fidelity requirement aside)
    assert rc == (cli.EXIT_GATE if p["summary"]["high_risk"] or doc["summary"]["required_failed"] else 0)


def test_coverage_section_flags_starved_strata(small_run, small_run_b, tmp_path, capsys):
    _, run_dir, _ = small_run
    cov = tmp_path / "coverage.toml"
    cov.write_text('[density]\nrural = { min_share = 0.5 }\n[service]\nsms = { min_share = 0.01 }\n')
    out = tmp_path / "rep"
    rc = cli.run(parse(["evaluate", "--synthetic", str(run_dir), "--real", f"cdr={small_run_b}", "--out", str(out),
                        "--coverage", str(cov)]))
    text = capsys.readouterr()
    assert rc == 0, text.err
    c = json.loads((out / "metrics.json").read_text())["coverage"]
    assert c["flagged"] == ["density.rural"]
    assert "id='coverage-table'" in (out / "report.html").read_text()
    assert "under-covered: density.rural" in text.out
    cov.write_text('[density]\nrural = { min_share = 2 }\n')
    assert cli.run(parse(["evaluate", "--synthetic", str(run_dir), "--real", f"cdr={small_run_b}", "--out",
                          str(tmp_path / "rep2"), "--coverage", str(cov)])) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "density.rural" in err and "Traceback" not in err
