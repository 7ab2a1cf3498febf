"""`telcosim benchmark`: the generator registry, task scoring and intervals on tiny inputs, the
controls ordered as they must be, and the command's errors. The full suite is behind `slow`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from telcosim.cli import main
from telcosim.evaluation import benchmark as B
from telcosim.evaluation import benchmark_generators as G
from telcosim.realdata import readers
from tests.conftest import SHARED_DATA


def _people(n: int, seed: int) -> pd.DataFrame:
    """Correlated people: the heavy callers also text more and have longer calls."""
    rng = np.random.default_rng(seed)
    a = rng.lognormal(0, 0.8, n)
    return pd.DataFrame({"voice_per_day": a * rng.lognormal(0, 0.2, n), "sms_per_day": 3 * a * rng.lognormal(0, 0.3, n),
                         "call_s_median": 60 * a ** 0.5 * rng.lognormal(0, 0.2, n),
                         "top_contact_share": np.clip(0.9 - 0.1 * np.log(a) + rng.normal(0, 0.05, n), 0, 1)})


def _weeks(n: int, seed: int) -> pd.DataFrame:
    """Area-weeks whose peak hour and depth move together (one smooth daily cycle per row)."""
    rng = np.random.default_rng(seed)
    h = np.arange(168)
    depth = rng.uniform(0.2, 0.9, n)[:, None]
    y = 1 + depth * np.sin(2 * np.pi * (h[None, :] % 24 - 6) / 24) + rng.normal(0, 0.02, (n, 168))
    return pd.DataFrame(y / y.mean(axis=1, keepdims=True), columns=[f"h{i:03d}" for i in range(168)])


def _windows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16))
    y = rng.integers(0, 2, n)
    x[y == 1, 12:] -= 1.5
    return G.window_frame(x, y)


def _real(frame_fn, n: int = 240) -> B.Real:
    fit, chk = frame_fn(n, 1), frame_fn(n // 2, 2)
    return B.Real(fit, chk, np.array([f"f{i}" for i in range(len(fit))], dtype=object),
                  np.array([f"c{i}" for i in range(len(chk))], dtype=object), "made up")


CTX = G.Context(data_dir=SHARED_DATA, work=SHARED_DATA)


def _score(task: str, real: B.Real, gen: str, seed: int = 3, boot: int = 60) -> dict:
    syn = G.GENERATORS[gen]().sample(B.TASKS[task].rep, real.fit, len(real.fit), seed, CTX)
    return B.score_task(B.TASKS[task], real, syn, seed, boot)


# --------------------------------------------------------------------------- registry


def test_registry_names_families_and_representations():
    assert {"bootstrap", "marginals", "telcosim-default", "telcosim-students", "shape-vae", "shape-gan",
            "sdv-gaussian-copula", "sdv-ctgan"} <= set(G.GENERATORS)
    for name, cls in G.GENERATORS.items():
        assert cls.name == name and cls.family in ("telcosim", "learned", "peer", "control") and cls.description
        assert set(cls.representations) <= set(B.REPRESENTATIONS), name
    # every task has a direction and a representation some telcosim generator and two others produce
    for t in B.TASKS.values():
        assert t.direction in ("lower", "higher")
        makers = [c for c in G.GENERATORS.values() if t.rep in c.representations]
        assert any(c.family == "telcosim" for c in makers) and len([c for c in makers if c.family != "telcosim"]) >= 2
    with pytest.raises(ValueError, match="registered twice"):
        G.register(type("Again", (G.Generator,), {"name": "bootstrap"}))


def test_controls_keep_columns_and_marginals_break_dependence():
    fit = _people(400, 1)
    boot = G.GENERATORS["bootstrap"]().sample("subscriber", fit, 300, 5, CTX)
    marg = G.GENERATORS["marginals"]().sample("subscriber", fit, 300, 5, CTX)
    assert list(boot.columns) == list(fit.columns) == list(marg.columns) and len(boot) == len(marg) == 300
    assert set(marg["sms_per_day"]) <= set(fit["sms_per_day"])  # values drawn from the fit part's own
    assert B._spearman(fit.to_numpy())[0] > 0.7 > 0.2 > abs(B._spearman(marg.to_numpy())[0])
    again = G.GENERATORS["marginals"]().sample("subscriber", fit, 300, 5, CTX)
    pd.testing.assert_frame_equal(marg, again)  # seeded


def test_peer_without_its_venv_names_the_make_target(monkeypatch, tmp_path):
    monkeypatch.setattr(G, "PEERS_PYTHON", tmp_path / "nope" / "bin" / "python")
    msg = G.GENERATORS["sdv-ctgan"]().missing(CTX)
    assert msg and "make peers" in msg
    assert "sdv-ctgan" not in G.default_names(CTX) and "bootstrap" in G.default_names(CTX)
    with pytest.raises(G.GeneratorError, match="make peers"):
        G.GENERATORS["sdv-gaussian-copula"]().sample("subscriber", _people(20, 1), 20, 1, CTX)


# --------------------------------------------------------------------------- scoring and intervals


def test_bootstrap_interval_is_seeded_and_as_wide_as_the_standard_error():
    v = np.random.default_rng(0).normal(10, 2, 400)
    units = np.arange(len(v))

    def score(idx):
        return float(v.mean() if idx is None else v[idx].mean())
    value, ci = B.bootstrap_ci(score, units, 400, seed=1)
    assert value == pytest.approx(v.mean()) and ci[0] < value < ci[1]
    assert (ci[1] - ci[0]) == pytest.approx(2 * 1.96 * v.std() / np.sqrt(len(v)), rel=0.2)
    assert B.bootstrap_ci(score, units, 400, seed=1) == (value, ci)
    assert B.bootstrap_ci(score, units, 400, seed=2)[1] != ci


def test_bootstrap_control_beats_marginals_on_dependence_and_tail():
    people = _real(_people)
    b, m = _score("fidelity.subscriber_dependence", people, "bootstrap"), \
        _score("fidelity.subscriber_dependence", people, "marginals")
    assert b["ci"][1] < m["ci"][0], (b, m)
    weeks = _real(_weeks, 120)
    b, m = _score("coverage.area_week_tail", weeks, "bootstrap"), _score("coverage.area_week_tail", weeks, "marginals")
    assert b["score"] > 0.8 > 0.3 > m["score"]
    b, m = _score("utility.next_hour", weeks, "bootstrap"), _score("utility.next_hour", weeks, "marginals")
    assert b["score"] < 1.1 < m["score"]


def test_privacy_tasks_flag_the_copying_control():
    people = _real(_people)
    b, m = _score("privacy.dcr_share", people, "bootstrap"), _score("privacy.dcr_share", people, "marginals")
    # a fit-part sample as large as the check part holds half the copied rows: about 0.75, not 1
    assert b["score"] > 0.7 and b["ci"][0] > m["score"]
    b, m = _score("privacy.mia_advantage", people, "bootstrap"), _score("privacy.mia_advantage", people, "marginals")
    assert b["ci"][0] > 0.2 and abs(m["score"]) < 0.1


def test_detection_learns_steps_from_labelled_windows_only():
    w = _real(_windows)
    b, m = _score("detection.step_change", w, "bootstrap"), _score("detection.step_change", w, "marginals")
    assert b["score"] > 0.85 and m["ci"][0] < 0.5 + 0.15 and m["score"] < b["ci"][0]


def test_real_vs_real_baseline_is_small_for_one_population():
    people = _real(_people, 400)
    base = B.real_vs_real(B.TASKS["fidelity.subscriber_marginals"], people, seed=1)
    m = _score("fidelity.subscriber_marginals", people, "marginals")
    assert 0 < base < 0.25 and m["score"] < max(2 * base, 0.05) * 1.5


def test_people_table_from_events():
    ev = pd.DataFrame({"person": ["a", "a", "a", "b"], "voice": [True, True, False, True],
                       "sms": [False, False, True, False], "counterpart": ["x", "y", "x", "-1"],
                       "answered_s": [30.0, np.nan, np.nan, np.nan]})
    t = G.people_table(ev, days=2)
    assert t.loc[0].tolist() == [1.0, 0.5, 30.0, pytest.approx(2 / 3)]
    assert t.loc[1].tolist() == [0.5, 0.0, 0.0, 0.0]  # no answered call, no known counterpart


def test_subscriber_table_of_a_run(small_run):
    _, run_dir, _ = small_run
    t = G.subscriber_table_from_cdr(readers.read_cdr(run_dir), days=1)
    assert list(t.columns) == ["voice_per_day", "sms_per_day", "call_s_median", "top_contact_share"]
    assert len(t) > 1000 and (t["voice_per_day"] + t["sms_per_day"] > 0).all()
    assert t["top_contact_share"].between(0, 1).all() and t["call_s_median"].median() > 10


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize("argv, needle", [
    (["--generators", "nope"], "--generators 'nope': unknown"),
    (["--tasks", "fidelity.nope"], "--tasks 'fidelity.nope': unknown"),
    (["--generators", ""], "--generators: empty"),
])
def test_cli_bad_names_exit_2_with_one_line(tmp_path, capsys, argv, needle):
    assert main(["benchmark", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and not (tmp_path / "o").exists()


def test_cli_peer_without_venv_and_missing_data(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(G, "PEERS_PYTHON", tmp_path / "nope" / "bin" / "python")
    assert main(["benchmark", "--out", str(tmp_path / "o"), "--generators", "sdv-ctgan,bootstrap"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "make peers" in err[0]
    assert main(["benchmark", "--out", str(tmp_path / "o"), "--data", str(tmp_path), "--generators", "bootstrap",
                 "--tasks", "privacy.dcr_share"]) == 2
    assert "no copenhagen/" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED_DATA / "copenhagen").exists(), reason="needs ../shared/data")
def test_cli_writes_the_leaderboard(tmp_path, capsys):
    out = tmp_path / "lb"
    assert main(["benchmark", "--out", str(out), "--generators", "bootstrap,marginals", "--quick",
                 "--data", str(SHARED_DATA), "--tasks", "fidelity.subscriber_dependence,privacy.dcr_share"]) == 0
    doc = json.loads((out / "leaderboard.json").read_text())
    assert doc["suite_version"] == B.SUITE_VERSION and doc["generators_ran"] == ["bootstrap", "marginals"]
    t = doc["tasks"]["fidelity.subscriber_dependence"]
    assert t["direction"] == "lower" and t["results"]["bootstrap"]["rank"] == 1 and "tolerance" in t
    assert t["results"]["bootstrap"]["within_tolerance"] and not t["results"]["marginals"]["within_tolerance"]
    assert "suite 1" in (out / "leaderboard.html").read_text() and "bootstrap, marginals" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "milan_hourly").exists(), reason="needs ../shared/data")
def test_full_suite_quick(tmp_path):
    gens = ["telcosim-default", "telcosim-flow", "telcosim-sequences", "shape-vae", "bootstrap", "marginals"]
    doc = B.run_benchmark(SHARED_DATA, tmp_path, gens, list(B.TASKS), quick=True)
    for name, t in doc["tasks"].items():
        assert "telcosim-default" in t["results"] and len(t["results"]) >= 3, name
        for r in t["results"].values():
            assert r["ci"][0] <= r["ci"][1]
    assert doc["tasks"]["privacy.dcr_share"]["results"]["telcosim-default"]["score"] < \
        doc["tasks"]["privacy.dcr_share"]["results"]["bootstrap"]["score"]


def test_ranks_share_ties_and_stop_privacy_at_its_no_leak_value():
    # a DCR share below 0.5 is no more private than 0.5: both rank first
    assert B.ranks(B.TASKS["privacy.dcr_share"], {"a": 0.23, "b": 0.52, "c": 0.45, "d": 0.71}) == \
        {"a": 1, "c": 1, "b": 3, "d": 4}
    assert B.ranks(B.TASKS["detection.step_change"], {"a": 0.6, "b": 0.7, "c": 0.7, "d": float("nan")}) == \
        {"b": 1, "c": 1, "a": 3}
    assert B.ranks(B.TASKS["fidelity.weekly_profile"], {"a": 0.2, "b": 0.1}) == {"b": 1, "a": 2}
