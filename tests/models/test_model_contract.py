"""The learned-generator contract (models/base.py), checked for every registered model on tiny data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from telcosim.calibration import neural  # noqa: F401  (registers neural-calibration, defined above models)
from telcosim.models import base

MODELS = sorted(base.registered())


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return np.array_equal(np.asarray(a), np.asarray(b))


def _first_dim(x) -> set[int]:
    if isinstance(x, dict):
        return {np.asarray(v).shape[0] for v in x.values()}
    return {np.asarray(x).shape[0]}


@pytest.fixture(scope="module")
def fitted():
    """Each registered model fitted once on its toy data with its tiny hyperparameters."""
    base.set_torch_threads(1)
    out = {}
    for name in MODELS:
        cls = base.registered()[name]
        data = cls.toy_data(0)
        out[name] = (cls(**cls.tiny_params), data)
        out[name] = (out[name][0].fit(data), data)
    return out


def test_import_does_not_import_torch():
    code = ("import sys, telcosim.models, telcosim.models.base; from telcosim.models import base; base.registered(); "
            "import telcosim.cli.models, telcosim.models.diagnostics; "
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False", res.stderr


def test_registry_lists_the_shape_models():
    reg = base.registered()
    assert {"shape-cvae", "shape-wgan-gp"} <= set(reg)
    assert all(cls.name == name for name, cls in reg.items())
    assert base.get("shape-cvae") is reg["shape-cvae"]
    with pytest.raises(base.ModelError, match="unknown model 'nope'; known: "):
        base.get("nope")


def test_register_refuses_a_second_class_under_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        @base.register("shape-cvae")
        class Other(base.LearnedGenerator):
            pass
    assert base.registered()["shape-cvae"].__name__ == "ShapeVAE"


@pytest.mark.parametrize("name", MODELS)
def test_fit_returns_self_and_sample_is_deterministic(name, fitted):
    model, _ = fitted[name]
    assert model.fitted and model.name == name
    a = model.sample(9, seed=7)
    b = model.sample(9, seed=7)
    c = model.sample(9, seed=8)
    assert _first_dim(a) == {9}
    assert _same(a, b)
    assert not _same(a, c)
    # sampling leaves torch's global random state alone
    import torch

    state = torch.random.get_rng_state().clone()
    model.sample(3, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("name", MODELS)
def test_fit_is_reproducible_and_keeps_the_global_torch_state(name, fitted):
    import torch

    cls = base.registered()[name]
    _, data = fitted[name]
    torch.manual_seed(1)  # the fit must not depend on the global torch state, nor change it
    state = torch.random.get_rng_state().clone()
    m1 = cls(**cls.tiny_params).fit(data)
    assert torch.equal(state, torch.random.get_rng_state())
    torch.manual_seed(2)
    m2 = cls(**cls.tiny_params).fit(data)
    assert _same(m1.sample(5, seed=3), m2.sample(5, seed=3))
    assert set(m1.module.state_dict()) == set(m2.module.state_dict())
    assert all(torch.equal(v, m2.module.state_dict()[k]) for k, v in m1.module.state_dict().items())


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip_and_sidecar(name, fitted, tmp_path):
    import torch

    model, data = fitted[name]
    out = model.save(tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == sorted([base.STATE_FILE, base.SIDECAR_FILE])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    state = torch.load(out / base.STATE_FILE, weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    side = json.loads((out / base.SIDECAR_FILE).read_text())
    assert side["model"] == name
    assert side["hyperparameters"] == json.loads(json.dumps(model.params))
    assert side["telcosim_version"] == __import__("telcosim").__version__
    assert side["data_fingerprint"] == base.data_fingerprint(data)
    assert side["data_fingerprint"].startswith("sha256:") and len(side["data_fingerprint"]) == 71
    assert side["training_seconds"] > 0
    assert side["training_device"] in ("cpu", "cuda")
    assert "epsilon" in side and "delta" in side
    if side["epsilon"] is not None:
        assert side["epsilon"] > 0
    for loader in (type(model), base.LearnedGenerator):
        back = loader.load(out)
        assert type(back) is type(model)
        assert _same(back.sample(11, seed=5), model.sample(11, seed=5))
    # saving again replaces the folder whole
    model.save(out)
    assert _same(base.LearnedGenerator.load(out).sample(4, seed=2), model.sample(4, seed=2))


def test_fingerprint_follows_bytes_and_shape():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert base.data_fingerprint(a) == base.data_fingerprint(a.copy())
    assert base.data_fingerprint(a) != base.data_fingerprint(a.reshape(4, 3))
    b = a.copy()
    b[0, 0] = 99
    assert base.data_fingerprint(a) != base.data_fingerprint(b)
    assert base.data_fingerprint({"x": a, "y": a[:, 0]}) == base.data_fingerprint({"y": a[:, 0], "x": a})


def test_bad_use_is_a_model_error(tmp_path):
    cls = base.registered()["shape-cvae"]
    with pytest.raises(base.ModelError, match="unknown hyperparameter"):
        cls(colour="red")
    m = cls(**cls.tiny_params)
    with pytest.raises(base.ModelError, match="not fitted"):
        m.sample(3, seed=0)
    with pytest.raises(base.ModelError, match="nothing to save"):
        m.save(tmp_path / "x")
    with pytest.raises(base.ModelError, match="same first dimension"):
        m.fit({"shape": np.ones((3, 168), np.float32), "level": np.ones(2, np.float32),
               "density": np.zeros(3, np.int64)})
    with pytest.raises(base.ModelError, match="NaN"):
        m.fit({"shape": np.full((3, 168), np.nan, np.float32), "level": np.ones(3, np.float32),
               "density": np.zeros(3, np.int64)})
    m.fit(cls.toy_data(1))
    for bad in (-1, 2.5, "3", 2**63):
        with pytest.raises(base.ModelError, match="seed"):
            m.sample(3, seed=bad)
    with pytest.raises(base.ModelError, match="sample size"):
        m.sample(-2, seed=0)
    with pytest.raises(base.ModelError, match="not a folder"):
        base.LearnedGenerator.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(base.ModelError, match="no model.json"):
        base.LearnedGenerator.load(tmp_path / "empty")
    d = m.save(tmp_path / "m")
    (d / base.STATE_FILE).write_bytes(b"not a torch file")
    with pytest.raises(base.ModelError, match="cannot load the weights"):
        base.LearnedGenerator.load(d)
    side = json.loads((d / base.SIDECAR_FILE).read_text())
    side["model"] = "shape-wgan-gp"
    (d / base.SIDECAR_FILE).write_text(json.dumps(side))
    with pytest.raises(base.ModelError, match="is not a 'shape-cvae' model"):
        cls.load(d)
    (d / base.SIDECAR_FILE).write_text("{")
    with pytest.raises(base.ModelError, match="not readable JSON"):
        base.LearnedGenerator.load(d)
