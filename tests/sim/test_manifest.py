"""A calibrated scenario's privacy ledger travels into the manifest of every run that uses it."""

from __future__ import annotations

import json

from telcosim.cli import main


def test_ledger_is_copied_into_the_manifest_through_extends(tmp_path, capsys):
    ledger = {"per_source": [{"source": "drive", "spent": {"epsilon": 1.0, "delta": 0.0}}]}
    (tmp_path / "cal.privacy.json").write_text(json.dumps(ledger))
    (tmp_path / "cal.toml").write_text('name = "cal"\nprivacy_ledger = "cal.privacy.json"\n'
                                       "[population]\nsubscribers = 200\n")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "study.toml").write_text('extends = "../cal.toml"\nseed = 3\n')
    assert main(["run", str(tmp_path / "more" / "study.toml"), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["privacy_ledger"]["ledger"] == ledger
    assert manifest["privacy_ledger"]["file"] == "cal.privacy.json"
    assert len(manifest["privacy_ledger"]["sha256"]) == 64
    plain = tmp_path / "plain"
    assert main(["run", "--subscribers", "200", "--out", str(plain), "--quiet"]) == 0
    assert json.loads((plain / "manifest.json").read_text())["privacy_ledger"] is None


def test_unreadable_ledger_is_an_input_error(tmp_path, capsys):
    (tmp_path / "bad.toml").write_text('privacy_ledger = "missing.json"\n[population]\nsubscribers = 200\n')
    assert main(["run", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bad.toml: privacy_ledger: 'missing.json'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
