"""``telcosim models train / diagnose``: bad input is one line and exit 2; a tiny training run writes a
loadable model with its diagnostics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from telcosim.cli import main
from telcosim.models import base, shapes
from tests.conftest import SHARED_DATA


def _err(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line]


def test_bad_input_is_one_line_each_and_exit_2(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    rc = main(["models", "train", "shapes", "--kind", "vae", "--data", str(tmp_path / "nope"),
               "--out", str(tmp_path / "afile"), "--param", "epochs=0", "--param", "colour=red",
               "--param", "noise=maybe", "--param", "lr"])
    assert rc == 2
    err = _err(capsys)
    assert err == [
        "telcosim: error: --param epochs: '0' is not a positive integer",
        "telcosim: error: --param colour: unknown hyperparameter; allowed: batch, beta, epochs, hidden, "
        "latent, lr, noise, weight_decay",
        "telcosim: error: --param noise: 'maybe' is not true or false",
        "telcosim: error: --param 'lr': expected KEY=VALUE",
        f"telcosim: error: --out {tmp_path / 'afile'}: is a file; expected a folder for the model",
        f"telcosim: error: --data {tmp_path / 'nope'}: not a folder; expected the shared data folder (../shared/data)",
    ]
    assert not list(tmp_path.glob(".*"))


def test_missing_data_and_bad_model_folder(capsys, tmp_path):
    rc = main(["models", "train", "shapes", "--kind", "gan", "--data", str(tmp_path), "--out", str(tmp_path / "m")])
    assert rc == 2
    assert _err(capsys) == [f"telcosim: error: {tmp_path}: no {shapes.MILAN}; expected the shared data folder "
                            "(../shared/data) or one laid out like it"]
    assert not (tmp_path / "m").exists()
    rc = main(["models", "diagnose", str(tmp_path / "nomodel"), "--data", str(tmp_path)])
    assert rc == 2
    assert _err(capsys) == [f"telcosim: error: {tmp_path / 'nomodel'}: not a folder; expected a model folder "
                            "(state_dict.pt + model.json)"]


def test_kind_is_checked_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["models", "train", "shapes", "--kind", "flow", "--data", "x", "--out", "y"])
    assert exc.value.code == 2
    assert "invalid choice: 'flow'" in capsys.readouterr().err


def test_tiny_train_then_diagnose(capsys, tmp_path):
    if not (SHARED_DATA / shapes.MILAN).is_file():
        pytest.skip(f"shared data not present ({SHARED_DATA})")
    out = tmp_path / "vae"
    rc = main(["models", "train", "shapes", "--kind", "vae", "--data", str(SHARED_DATA), "--out", str(out),
               "--seed", "3", "--param", "epochs=1", "--param", "hidden=16", "--param", "latent=2"])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["diagnostics.json", "model.json", "state_dict.pt"]
    assert not list(tmp_path.glob(".*"))
    side = json.loads((out / "model.json").read_text())
    assert side["hyperparameters"]["seed"] == 3 and side["hyperparameters"]["epochs"] == 1
    doc = json.loads((out / "diagnostics.json").read_text())
    assert {"precision", "recall", "density", "coverage", "busy_hour_tv", "dcr_ratio"} <= set(doc["metrics"])
    assert "precision" in capsys.readouterr().out
    # the saved model samples; diagnose reproduces the same figures from the folder
    model = base.LearnedGenerator.load(out)
    s = model.sample_conditional(np.array([0, 1, 2]), seed=0)
    np.testing.assert_allclose(s["shape"].mean(axis=1), 1.0)
    rc = main(["models", "diagnose", str(out), "--data", str(SHARED_DATA), "--out", str(tmp_path / "d.json")])
    assert rc == 0
    assert json.loads((tmp_path / "d.json").read_text())["metrics"] == doc["metrics"]
    rc = main(["models", "train", "shapes", "--kind", "vae", "--data", str(SHARED_DATA), "--out", str(out)])
    assert rc == 2
    assert _err(capsys) == [f"telcosim: error: --out {out}: exists; give --overwrite to replace it"]
    rc = main(["models", "train", "shapes", "--kind", "gan", "--data", str(SHARED_DATA), "--out", str(out),
               "--overwrite", "--param", "steps=2", "--param", "hidden=16", "--param", "critic_steps=1"])
    assert rc == 0
    side = json.loads((out / "model.json").read_text())
    assert side["model"] == "shape-wgan-gp"
    assert side["spec"]["data"]["split"]["held_out_weeks"] == doc["held_out_items"]
    assert not list(tmp_path.glob(".*"))
