"""Neural calibration (calibration/neural.py) and ``telcosim calibrate --method neural``.

Quick checks only: the transforms, the posterior network on a made-up problem where the answer is
known (it must beat the prior and give prior-wide intervals when told nothing), and the CLI end to
end on a tiny surrogate (4 runs of 200 subscribers) that a second call loads from the cache. The
known-answer comparison with the search is benchmarks/bench_neural_calibration.py (numbers in
docs/models-behaviour.md)."""

from __future__ import annotations

import argparse
import json
import time
import tomllib

import numpy as np
import pytest

from telcosim.calibration import calibrate as C
from telcosim.calibration import neural as N
from telcosim.cli import calibrate as cli
from telcosim.models import base


def test_latent_round_trip_and_statistics_transform():
    names = N.param_names()
    P = N.prior_design(50, names, seed=3)
    r = N._ranges(names)
    u = N.to_unit(P, r)
    back = N.to_unit(N.from_latent(N.to_latent(P, r), r), r)
    assert np.allclose(back, np.clip(u, N.EDGE, 1 - N.EDGE), atol=1e-9)  # exact inside the kept range
    # a Latin hypercube: every tenth of every range holds 5 of the 50 points
    assert all((np.histogram(u[:, j], bins=10, range=(0, 1))[0] == 5).all() for j in range(len(names)))
    T = N.stat_transform(["call_duration.log_mu", "sms_call_ratio"], np.array([[3.0, np.e], [np.nan, 0.0]]))
    assert T[0, 0] == 3.0 and T[0, 1] == pytest.approx(1.0) and np.isnan(T[1]).all()


def test_target_statistics_average_repeated_targets_on_the_log_scale():
    doc = {"targets": {"a.sms_call_ratio": {"value": 2.0}, "b.sms_call_ratio": {"value": 8.0},
                       "c.call_duration": {"value": {"log_mu": 3.5, "log_sigma": 1.0, "median_s": 30,
                                                     "p90_s": 100}}}}
    stats, _ = N.target_statistics(doc)
    assert stats["sms_call_ratio"] == pytest.approx(4.0)
    assert stats["call_duration.log_mu"] == 3.5 and set(stats) == {
        "sms_call_ratio", "call_duration.log_mu", "call_duration.log_sigma", "call_duration.median_s",
        "call_duration.p90_s"}


def _toy_problem(n, seed):
    """Each statistic of the search's list a smooth function of one or two knobs, with noise."""
    names, snames = N.param_names(), N.stat_names()
    rng = np.random.default_rng(seed)
    P = N.prior_design(n, names, seed)
    U = N.to_unit(P, N._ranges(names))
    S = np.empty((n, len(snames)))
    for j in range(len(snames)):
        a, b = j % len(names), (j + 3) % len(names)
        S[:, j] = np.exp(1.5 * U[:, a] + 0.5 * U[:, b] ** 2 + rng.normal(0, 0.03, n))
    return P, S, U


def test_posterior_network_learns_a_known_relation():
    base.set_torch_threads(1)
    P, S, _ = _toy_problem(300, 0)
    model = N.NeuralPosterior(epochs=150, members=3, hidden=32, seed=1).fit({"params": P, "stats": S})
    Pt, St, Ut = _toy_problem(40, 9)
    names, snames = N.param_names(), N.stat_names()
    err, prior_err, covered = [], [], 0
    for i in range(len(Pt)):
        post = model.posterior(dict(zip(snames, St[i], strict=True)), seed=0)
        est = np.array([[post[n]["median"] for n in names]])
        err.append(np.abs(N.to_unit(est, N._ranges(names))[0] - Ut[i]))
        prior_err.append(np.abs(0.5 - Ut[i]))
        covered += sum(post[n]["q05"] <= Pt[i, j] <= post[n]["q95"] for j, n in enumerate(names))
    err, prior_err = np.mean(err), np.mean(prior_err)
    assert err < 0.5 * prior_err, (err, prior_err)
    assert covered / (len(Pt) * len(names)) > 0.7
    # told nothing, the posterior is about the prior: wide intervals on every knob
    blank = model.posterior({}, seed=0)
    widths = N.to_unit(np.array([[blank[n]["q95"] for n in names]]), N._ranges(names))[0] - N.to_unit(
        np.array([[blank[n]["q05"] for n in names]]), N._ranges(names))[0]
    assert (widths > 0.5).all(), widths
    with pytest.raises(base.ModelError, match="unknown statistic"):
        model.posterior({"nope": 1.0})


def parse(argv):
    p = argparse.ArgumentParser(prog="telcosim")
    sub = p.add_subparsers(dest="command", required=True)
    cli.add_parser(sub)
    return p.parse_args(["calibrate", *argv])


@pytest.fixture(scope="module")
def targets_file(small_run, tmp_path_factory):
    _, out, _ = small_run
    doc = C.targets_from_run(out)
    path = tmp_path_factory.mktemp("targets") / "t.json"
    path.write_text(json.dumps(doc, allow_nan=False, default=float))
    return path


# Slow (about 70 s on 2 cores: trains on prior runs); test_posterior_network_learns_a_known_relation
# keeps the network in the default suite.
@pytest.mark.slow
def test_cli_neural_trains_once_then_answers_from_the_cache(targets_file, tmp_path, capsys):
    base.set_torch_threads(1)
    cache = tmp_path / "cache"
    argv = ["--targets", str(targets_file), "--allow-exact", "--method", "neural", "--cache-dir", str(cache),
            "--neural-runs", "4", "--subscribers", "200", "--quiet"]
    out1 = tmp_path / "a.toml"
    assert cli.run(parse([*argv, "--out", str(out1)])) == 0
    assert "wrote" in capsys.readouterr().out
    folders = [p for p in cache.iterdir() if p.is_dir()]
    assert len(folders) == 1 and (folders[0] / base.SIDECAR_FILE).is_file()
    t0 = time.perf_counter()
    out2 = tmp_path / "b.toml"
    assert cli.run(parse([*argv, "--out", str(out2), "--no-check"])) == 0
    assert time.perf_counter() - t0 < 30  # loads the network: no simulation
    rep = json.loads((tmp_path / "a.report.json").read_text())
    assert rep["settings"]["method"] == "neural" and rep["settings"]["trials"] == 4
    kinds = [t["kind"] for t in rep["trials"]]
    assert kinds[:2] == ["check-start", "check-estimate"] and kinds[2:] in ([], ["check-combined"])
    # the written values are the best point evaluated, never worse than the start
    objectives = [t["objective"] for t in rep["trials"]]
    assert rep["best"]["objective"] == min(objectives) <= rep["best"]["objective_before"] == objectives[0]
    chosen = rep["trials"][rep["settings"]["best_trial"]]
    fitted = rep["params"]
    assert set(rep["uncertainty"]) == set(fitted) and fitted
    for name, u in rep["uncertainty"].items():
        assert u["q05"] <= u["median"] <= u["q95"]
        assert rep["settings"]["estimate"][name] == u["median"]
        assert fitted[name]["best"] == chosen["params"][name]
        assert C.PARAMS[name].low <= u["q05"] and u["q95"] <= C.PARAMS[name].high
    text = out1.read_text()
    assert "90% interval" in text and "privacy_ledger" in text
    sc = tomllib.loads(text)
    assert sc["mobility"]["stickiness"] == pytest.approx(fitted["mobility.stickiness"]["best"], rel=1e-5)
    from telcosim import scenarios
    loaded = scenarios.load(str(out1), [])  # a valid scenario, as the search's output is
    assert loaded.mobility.stickiness == pytest.approx(sc["mobility"]["stickiness"])
    # the same network and posterior seed: the same answer
    assert json.loads((tmp_path / "b.report.json").read_text())["uncertainty"] == rep["uncertainty"]


def test_cli_neural_bad_options_one_line_each(targets_file, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    code = cli.run(parse(["--targets", str(targets_file), "--allow-exact", "--out", str(tmp_path / "x.toml"),
                          "--method", "neural", "--cache-dir", str(f)]))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"telcosim: error: --cache-dir {f}: is a file; expected a folder (created if missing)"]
    code = cli.run(parse(["--targets", str(targets_file), "--allow-exact", "--out", str(tmp_path / "x.toml"),
                          "--no-check", "--cache-dir", str(tmp_path)]))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["telcosim: error: --cache-dir: only with --method neural",
                                 "telcosim: error: --no-check: only with --method neural"]
    assert not (tmp_path / "x.toml").exists()
    with pytest.raises(SystemExit):
        parse(["--targets", "t.json", "--out", "x.toml", "--method", "magic"])
