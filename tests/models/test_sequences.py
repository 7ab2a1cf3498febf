"""The subscriber-day sequence transformer (models/sequences.py): conditioning, memorisation, the
CLI (train on a run, sample CDR Parquet) and a simulation driven by it (population.behaviour_model)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from telcosim.cli import main
from telcosim.models import base
from telcosim.models import sequences as sq
from telcosim.sim.schema import cdr_schema

TINY = ["--param", "d_model=16", "--param", "layers=1", "--param", "heads=2", "--param", "max_len=48",
        "--param", "epochs=3", "--param", "lr=0.01"]


def _shift(model, seed=3, n=300):
    """(weekend / weekday mean events per day, rural - urban share of events that moved) of samples."""
    wd = model.sample_condition(n, {"day": "weekday"}, seed=seed)
    we = model.sample_condition(n, {"day": "weekend"}, seed=seed)
    ur = model.sample_condition(n, {"density": "urban"}, seed=seed)
    ru = model.sample_condition(n, {"density": "rural"}, seed=seed)

    def moved_share(s):
        valid = np.arange(s["events"].shape[1])[None, :] < s["length"][:, None]
        return float(s["events"][..., 3][valid].mean())

    return float(we["length"].mean() / max(wd["length"].mean(), 1e-9)), moved_share(ru) - moved_share(ur)


def test_sampled_marginals_shift_with_the_conditions_as_the_training_data_do():
    base.set_torch_threads(1)
    data = sq.SequenceTransformer.toy_data(0)
    ctl, ln = data["controls"], data["length"]
    real_ratio = ln[ctl[:, 1] == 1].mean() / ln[ctl[:, 1] == 0].mean()
    assert real_ratio < 0.5  # the toy data: weekend days hold far fewer events, rural homes move more
    model = sq.SequenceTransformer(d_model=16, layers=1, heads=2, max_len=16, epochs=12, batch_size=32,
                                   lr=1e-2).fit(data)
    ratio, moved_gap = _shift(model)
    assert ratio < 0.6, ratio
    assert moved_gap > 0.15, moved_gap
    # the same check fails for a model that ignores its controls (their embeddings zeroed)
    import torch

    with torch.no_grad():
        for emb in model.module.ctrl:
            emb.weight.zero_()
    blind_ratio, blind_gap = _shift(model)
    assert not (blind_ratio < 0.6 and blind_gap > 0.15), (blind_ratio, blind_gap)


def test_condition_strings_are_checked():
    assert sq.parse_condition("day=weekend, density=rural") == {"day": "weekend", "density": "rural"}
    assert sq.parse_condition("") == {}
    for bad, msg in (("day=sunday", "day is one of weekday, weekend"), ("colour=red", "unknown key"),
                     ("day", "expected KEY=VALUE"), ("day=weekend,day=weekday", "given twice")):
        with pytest.raises(base.ModelError, match=msg):
            sq.parse_condition(bad)


def test_prdc_and_closest_distances_on_known_sets():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 3))
    same = sq.prdc(real, rng.normal(size=(300, 3)))
    far = sq.prdc(real, rng.normal(size=(300, 3)) + 6.0)
    assert same["precision"] > 0.8 and same["recall"] > 0.8 and same["coverage"] > 0.8
    assert far["precision"] == 0.0 and far["coverage"] == 0.0
    d_tr, d_ho = sq.closest_distances(real[:5], real, real + 1.0)
    assert np.allclose(d_tr, 0.0) and (d_ho > 0).all()


@pytest.fixture(scope="module")
def trained(small_run, tmp_path_factory):
    """A tiny sequence model trained by the CLI on the small test city's run (whole subscribers held out)."""
    _, run_dir, _ = small_run
    out = tmp_path_factory.mktemp("sequences") / "model"
    assert main(["models", "train", "sequences", "--run", str(run_dir), "--out", str(out), *TINY]) == 0
    return run_dir, out


def test_training_writes_the_model_its_diagnostics_and_no_memorisation(trained):
    run_dir, out = trained
    side = json.loads((out / "model.json").read_text())
    assert side["model"] == "sequences" and side["training_seconds"] > 0 and side["epsilon"] is None
    assert side["spec"]["data"]["split"]["by"] == "subscriber"
    doc = json.loads((out / "diagnostics.json").read_text())
    assert set(doc["prdc"]["synthetic_vs_held_out"]) == {"precision", "recall", "density", "coverage"}
    mem = doc["memorisation"]
    # sampled days are no closer to the days trained on than to held-out subscribers' days
    assert mem["median_to_train"] >= 0.95 * mem["median_to_held_out"], mem
    assert mem["share_closer_to_train"] <= mem["share_closer_to_held_out"] + 0.05, mem


def test_sample_cli_writes_cdr_parquet_and_refuses_bad_conditions(trained, tmp_path, capsys):
    _, out = trained
    f = tmp_path / "s.parquet"
    assert main(["models", "sample", "sequences", "--model", str(out), "--condition", "day=weekday,density=urban",
                 "-n", "50", "--seed", "4", "--out", str(f)]) == 0
    t = pq.read_table(f)
    side = json.loads((out / "model.json").read_text())
    assert t.schema.equals(cdr_schema(side["spec"]["cdr"]["timezone"]), check_metadata=False)
    assert t.num_rows > 0 and set(t.column("subscriber_id").to_numpy()) <= set(range(50))
    days = {d.weekday() for d in t.column("start_time").to_pandas().dt.date}
    assert days <= {0, 1, 2, 3, 4}  # weekdays only
    assert set(t.column("cell_id").to_numpy()) <= set().union(*side["spec"]["cdr"]["cells_by_class"].values())
    # the test city's run is one weekday (and has no rural cells): a weekend day is refused, not made up
    assert main(["models", "sample", "sequences", "--model", str(out), "--condition", "day=weekend", "-n", "5",
                 "--out", str(tmp_path / "w.parquet")]) == 2
    assert "condition day=weekend: no training day had it" in capsys.readouterr().err
    assert main(["models", "sample", "sequences", "--model", str(out), "--condition", "density=moon", "-n", "5",
                 "--out", str(tmp_path / "x.parquet")]) == 2
    err = capsys.readouterr().err
    assert "density is one of urban, suburban, rural" in err and "Traceback" not in err
    assert not (tmp_path / "x.parquet").exists()
    assert main(["models", "train", "sequences", "--out", str(tmp_path / "m"), "--kind", "vae", "--param",
                 "delta=1e-6"]) == 2
    err = capsys.readouterr().err
    assert "--kind: has no effect with 'train sequences'" in err and "--run: required" in err
    assert "--param delta: has no effect without DP-SGD; give --epsilon too" in err


def test_a_simulation_draws_its_subscribers_activity_from_the_model(trained, tmp_path):
    from telcosim.scenarios.runner import run as run_scenario
    from telcosim.sim.engine import Simulation
    from telcosim.sim.population import build_population
    from tests.conftest import small_scenario

    _, model_dir = trained
    sc = small_scenario(**{"population.subscribers": 2000, "population.behaviour_model": str(model_dir)})
    run_scenario(sc, tmp_path / "a")
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    learned = man["learned_generators"]["behaviour_model"]
    assert learned["model"] == "sequences" and set(learned["sampled_mo_per_day"]) == {"voice", "sms", "data"}
    subs = pq.read_table(tmp_path / "a" / "subscribers.parquet").to_pandas()
    assert subs["activity"].mean() == pytest.approx(1.0, abs=1e-9)
    # each subscriber's days are drawn for their segment (the lognormal activity class): the drawn
    # activity is higher for the high class than for the low, and the network then carries that
    # demand (originated CDRs per subscriber follow it)
    plain = build_population(sc.population, Simulation(sc).network, sc.seed)
    by_class = [subs["activity"].to_numpy()[plain.activity_class == k].mean() for k in (0, 2)]
    assert by_class[0] < 0.9 * by_class[1], by_class
    cdr = pq.read_table(tmp_path / "a" / "cdr", columns=["subscriber_id", "direction"]).to_pandas()
    mo = np.bincount(cdr.loc[cdr["direction"] == "mo", "subscriber_id"], minlength=2000)
    from scipy.stats import spearmanr

    assert spearmanr(subs.sort_values("subscriber_id")["activity"], mo).statistic > 0.5


def test_a_folder_of_another_model_is_refused(tmp_path):
    from telcosim.scenarios.runner import run as run_scenario
    from telcosim.sim.errors import ConfigError
    from tests.conftest import small_scenario

    cls = base.registered()["shape-cvae"]
    d = cls(**cls.tiny_params).fit(cls.toy_data(0)).save(tmp_path / "shape")
    sc = small_scenario(**{"population.subscribers": 200, "population.behaviour_model": str(d)})
    with pytest.raises(ConfigError, match="holds a 'shape-cvae' model; expected a folder from"):
        run_scenario(sc, tmp_path / "run")


@pytest.mark.slow
def test_held_out_prdc_and_memorisation_on_a_week_of_the_default_city(tmp_path):
    """The documented configuration (docs/models-sequences.md): the default city, 3,000 subscribers
    x 7 days, the default hyperparameters on the CPU; PRDC against held-out subscribers' days."""
    from telcosim.scenarios.runner import run as run_scenario
    from telcosim.sim import config

    base.set_torch_threads(1)
    run_scenario(config.load(None, ["population.subscribers=3000", "time.days=7", "seed=1"]), tmp_path / "run")
    arrays, ctx = sq.sequence_arrays(tmp_path / "run")
    train, held, _ = sq.split_by_subscriber(arrays, ctx["subscriber"], seed=0)
    model = sq.SequenceTransformer(seed=0).fit(train)
    doc = sq.evaluate(model, train, held, seed=0, rows=2000)
    p = doc["prdc"]["synthetic_vs_held_out"]
    assert p["precision"] >= 0.8 and p["recall"] >= 0.8 and p["coverage"] >= 0.8, doc["prdc"]
    mem = doc["memorisation"]
    assert mem["median_to_train"] >= 0.95 * mem["median_to_held_out"], mem
    c = doc["conditions"]
    # weekend days move less than weekdays in the data, and in the samples
    assert c["day=weekend"]["held_out"]["moves"] < c["day=weekday"]["held_out"]["moves"]
    assert c["day=weekend"]["synthetic"]["moves"] < c["day=weekday"]["synthetic"]["moves"]


def test_dp_sgd_keeps_one_day_per_subscriber_and_reports_epsilon(tmp_path):
    base.set_torch_threads(1)
    data = sq.SequenceTransformer.toy_data(1)
    data["subscriber"] = np.arange(len(data["length"])) // 3  # three days per subscriber
    model = sq.SequenceTransformer(**sq.SequenceTransformer.tiny_params, dp=True, target_epsilon=5.0,
                                   delta=1e-3).fit(data)
    assert 0 < model.epsilon <= 5.0 + 1e-6 and model.delta == 1e-3
    assert model.spec["dp_rows"] == 100 and model.spec["control_counts"] is None
    back = base.LearnedGenerator.load(model.save(tmp_path / "m"))  # the plain attention was put back
    assert json.loads((tmp_path / "m" / "model.json").read_text())["epsilon"] == model.epsilon
    a, b = back.sample(6, seed=2), model.sample(6, seed=2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
