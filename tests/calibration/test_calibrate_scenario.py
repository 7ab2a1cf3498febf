"""``calibrate --scenario``: the trials run through the one run path, so a scenario's learned
generators are honoured, and a scenario with incidents is refused with a clear error."""

from __future__ import annotations

import json
import tomllib

from telcosim.cli import main
from tests.calibration.test_calibrate import doc, tg


def _targets(tmp_path):
    t = tmp_path / "t.json"
    t.write_text(json.dumps(doc({"edges.call_duration": tg({"log_mu": 3.6, "log_sigma": 1.5, "median_s": 40.0,
                                                            "p90_s": 250.0})}, eps=0.7)))
    return t


def test_learned_shapes_are_honoured(tmp_path, capsys):
    out = tmp_path / "cal.toml"
    code = main(["calibrate", "--targets", str(_targets(tmp_path)), "--out", str(out), "--trials", "2",
                 "--subscribers", "300", "--params", "behaviour.call_duration_log_mu", "--set", "network.sites=20",
                 "--set", 'behaviour.cell_shapes="gan"', "--quiet"])
    assert code == 0, capsys.readouterr().err
    raw = tomllib.loads(out.read_text())
    assert raw["behaviour"]["cell_shapes"] == "gan"
    assert "call_duration_log_mu" in raw["behaviour"]


def test_a_scenario_with_incidents_is_refused(tmp_path, capsys):
    out = tmp_path / "cal.toml"
    code = main(["calibrate", "--targets", str(_targets(tmp_path)), "--out", str(out), "--trials", "2",
                 "--subscribers", "300", "--scenario", "site_outage_peak", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "incidents: calibration fits everyday behaviour" in err and "1 incident(s)" in err
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob("cal*"))
