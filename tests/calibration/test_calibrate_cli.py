"""``telcosim calibrate``: merge-only and a tiny fit write their files; bad input gives one line per
problem on stderr, exit 2, no traceback and nothing written."""

from __future__ import annotations

import argparse
import hashlib
import json
import tomllib

import pytest

from telcosim.cli import calibrate as cli
from tests.calibration.test_calibrate import doc, tg


def parse(argv):
    p = argparse.ArgumentParser(prog="telcosim")
    sub = p.add_subparsers(dest="command", required=True)
    cli.add_parser(sub)
    return p.parse_args(["calibrate", *argv])


def write(path, d):
    path.write_text(json.dumps(d))
    return path


def test_merge_only(tmp_path, capsys):
    a = write(tmp_path / "a.json", doc({"edges.sms_call_ratio": tg(2.0)}, eps=1.0))
    b = write(tmp_path / "b.json", doc({"edges.sms_call_ratio": tg(5.0)}, eps=0.5))
    out = tmp_path / "merged.json"
    assert cli.run(parse(["--targets", str(a), str(b), "--weights", "2", "1", "--out", str(tmp_path / "c.toml"),
                          "--merge-only", "--merged-out", str(out)])) == 0
    m = json.loads(out.read_text())
    assert m["targets"]["edges.sms_call_ratio"]["value"] == pytest.approx(3.0)
    assert [e["spent"]["epsilon"] for e in m["privacy"]["per_source"]] == [1.0, 0.5]
    assert all(len(e["sha256"]) == 64 for e in m["privacy"]["per_source"])
    assert "merged 2 file(s)" in capsys.readouterr().out
    assert not (tmp_path / "c.toml").exists()


def test_bad_inputs_one_line_each(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    v2 = write(tmp_path / "v2.json", {**doc({}), "schema_version": 2})
    nodoc = write(tmp_path / "list.json", [1, 2])
    ok = write(tmp_path / "ok.json", doc({"edges.sms_call_ratio": tg(2.0)}))
    out = tmp_path / "c.toml"
    code = cli.run(parse(["--targets", str(tmp_path / "bad.json"), str(v2), str(nodoc), str(tmp_path / "none.json"),
                          str(ok), "--out", str(out)]))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 4, err
    assert all(line.startswith("telcosim: error: ") for line in err) and "Traceback" not in "".join(err)
    assert "bad.json: not valid JSON (line 1" in err[0]
    assert "v2.json: schema_version 2 is not supported" in err[1]
    assert "list.json: expected a JSON object" in err[2]
    assert "none.json: no such targets file" in err[3]
    assert list(tmp_path.iterdir()) and not out.exists() and not list(tmp_path.glob(".*partial"))


def test_bad_options(tmp_path, capsys):
    ok = write(tmp_path / "ok.json", doc({"edges.sms_call_ratio": tg(2.0)}))
    code = cli.run(parse(["--targets", str(ok), "--out", str(tmp_path / "no" / "c.toml"), "--params",
                          "mobility.stickyness", "--merge-only"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 2
    assert "--merge-only needs --merged-out" in err[0] and "unknown knob 'mobility.stickyness'" in err[1]
    ok2 = write(tmp_path / "ok2.json", doc({"edges.sms_call_ratio": tg(3.0)}))
    code = cli.run(parse(["--targets", str(ok), str(ok2), "--weights", "1", "--out", str(tmp_path / "c.toml")]))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["telcosim: error: --weights: 1 weight(s) for 2 targets file(s); give one per file"]
    assert cli.run(parse(["--targets", str(ok), str(ok), "--out", str(tmp_path / "c.toml")])) == 2
    assert "the same file is given twice" in capsys.readouterr().err
    shares = write(tmp_path / "shares.json", doc({"activity.over_dispersion": tg(2.0, "aggregate")}))
    assert cli.run(parse(["--targets", str(shares), "--out", str(tmp_path / "c.toml")])) == 2
    assert "nothing to fit" in capsys.readouterr().err
    exact = doc({"edges.sms_call_ratio": tg(2.0)})
    exact["privacy"]["exact_no_privacy"] = True
    ex = write(tmp_path / "exact.json", exact)
    assert cli.run(parse(["--targets", str(ex), "--out", str(tmp_path / "c.toml")])) == 2
    assert "--allow-exact" in capsys.readouterr().err


def test_tiny_fit_writes_scenario_ledger_and_report(tmp_path, capsys):
    from telcosim import scenarios
    t = write(tmp_path / "t.json", doc({"edges.call_duration": tg({"log_mu": 3.6, "log_sigma": 1.5, "median_s": 40.0,
                                                                    "p90_s": 250.0})}, eps=0.7))
    out = tmp_path / "cal.toml"
    code = cli.run(parse(["--targets", str(t), "--out", str(out), "--trials", "2", "--subscribers", "300",
                          "--params", "behaviour.call_duration_log_mu", "--set", "network.sites=40", "--quiet"]))
    assert code == 0, capsys.readouterr().err
    text = out.read_text()
    side = tmp_path / "cal.privacy.json"
    assert hashlib.sha256(side.read_bytes()).hexdigest() in text
    ledger = json.loads(side.read_text())
    assert ledger["privacy"]["per_source"][0]["spent"]["epsilon"] == 0.7
    raw = tomllib.loads(text)
    assert set(raw) == {"name", "description", "privacy_ledger", "behaviour", "network"}
    assert raw["privacy_ledger"] == "cal.privacy.json"
    assert raw["network"]["sites"] == 40
    sc = scenarios.load(str(out))  # a valid scenario
    assert sc.behaviour.call_duration_log_mu == raw["behaviour"]["call_duration_log_mu"]
    assert "epsilon 0.7" in sc.description
    rep = json.loads((tmp_path / "cal.report.json").read_text())
    assert rep["best"]["params"]["behaviour.call_duration_log_mu"] == pytest.approx(sc.behaviour.call_duration_log_mu,
                                                                                    rel=1e-5)
    assert {r["statistic"] for r in rep["best"]["statistics"]} >= {"call_duration.log_mu", "call_duration.median_s"}
    assert all({"params", "objective"} <= set(tr) for tr in rep["trials"])
    # what is written is never worse than the start: the written scenario, run again as a fit run
    # is (same size, day and seed), scores the reported objective, at most the start's
    from telcosim.calibration import calibrate as C
    from telcosim.calibration import federate as F
    written = C.base_scenario(str(out), [])
    run = C.simulate(written, {}, 300, 1, tmp_path)
    terms, _ = C.target_terms(F.load_and_merge([t], None, False))
    again, _ = C.objective(terms, C.run_statistics(run, {"cdr"}))
    assert again == pytest.approx(rep["best"]["objective"], abs=1e-3)
    assert again <= rep["best"]["objective_before"] + 1e-9
