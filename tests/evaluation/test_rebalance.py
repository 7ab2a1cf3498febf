"""telcosim rebalance: a run whose rural cells and residents are deliberately starved gets extra
data that lifts them to their targets (measured from the written files, not from the code's own
summary), the weights recover the original distribution, an incident gap is filled with
'telcosim augment' episodes (a kind augment cannot make is reported as not fillable), the extra
runs are complete, verifiable runs with their own seeds and non-colliding subscriber ids, and the
output is written atomically."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from telcosim.cli import rebalance as rebalance_cli
from telcosim.evaluation import rebalance as rb
from telcosim.evaluation.coverage import load_targets
from telcosim.scenarios.runner import run
from tests.conftest import small_scenario

TARGETS = """
[density]
rural = { min_share = 0.15 }

[home_density]
rural = { min_share = 0.05 }

[hour]
"0-5" = { min_share = 0.16 }

[service]
sms = { min_share = 0.28 }

[incident]
cell_outage = { min_count = 100 }
"""


def parse(argv):
    p = argparse.ArgumentParser(prog="telcosim")
    sub = p.add_subparsers(dest="command", required=True)
    rebalance_cli.add_parser(sub)
    return p.parse_args(argv)


@pytest.fixture(scope="module")
def starved(tmp_path_factory):
    """A small city with rural cells but hardly anybody living there."""
    base = tmp_path_factory.mktemp("starved")
    sc = small_scenario(**{"network.urban_km": 1.5, "network.suburban_km": 2.8,
                           "population.home_weight.rural": 0.02, "population.subscribers": 3000})
    run(sc, base / "run")
    (base / "coverage.toml").write_text(TARGETS)
    return base / "run", base / "coverage.toml"


@pytest.fixture(scope="module")
def rebalanced(starved, tmp_path_factory):
    run_dir, cov = starved
    out = tmp_path_factory.mktemp("rebalanced") / "out"
    rc = rebalance_cli.run(parse(["rebalance", str(run_dir), "--target", str(cov), "--out", str(out), "--quiet"]))
    assert rc == 0
    return run_dir, out, json.loads((out / "manifest.json").read_text())


def _combined(run_dir, out, manifest):
    """Every record of the combined data, read from the run folders (and augment episodes) and
    records.parquet."""
    rec = pd.read_parquet(out / "records.parquet")
    frames = []
    cells = pd.read_parquet(run_dir / "cells.parquet").set_index("cell_id")["density"].astype(str)
    sources = [("original", run_dir / "cdr")]
    for g in manifest["generated"]:
        for src in g["sources"]:
            if g["kind"] == "run":
                sources.append((src, out / g["path"] / "cdr"))
            else:  # an augment episode: its incident run's rows (cells are the original's)
                folder, episode = src.split("/")
                sources.append((src, out / "extra" / folder / "cdr" / f"{episode}-incident.parquet"))
    for src, path in sources:
        cdr = pd.read_parquet(path, columns=["record_id", "cell_id", "direction", "outcome", "start_time"])
        cdr["serving"] = cells.loc[cdr["cell_id"]].to_numpy()
        cdr["hr"] = cdr["start_time"].dt.hour
        r = rec[rec["source"] == src].drop(columns=["source"])
        frames.append(cdr.merge(r, on="record_id", how="inner", validate="one_to_one").assign(source=src))
        if src == "original":
            assert len(frames[-1]) == len(cdr)  # every original record is in the combined data
    return pd.concat(frames, ignore_index=True)


def test_starved_strata_are_lifted_to_their_targets(rebalanced):
    run_dir, out, m = rebalanced
    data = _combined(run_dir, out, m)
    orig = data[data["source"] == "original"]
    rural_before = (orig["serving"] == "rural").mean()
    rural_after = (data["serving"] == "rural").mean()
    assert rural_before < 0.15 <= rural_after
    night = data["hr"].between(0, 5)
    assert orig["hr"].between(0, 5).mean() < 0.16 <= night.mean()
    assert (orig["service"] == "sms").mean() < 0.28 <= (data["service"] == "sms").mean()
    assert (data["home_density"] == "rural").mean() >= 0.05
    status = {g["gap"]: g for g in m["gaps"]}
    assert {k: g["status"] for k, g in status.items()} == {
        "density.rural": "filled", "home_density.rural": "filled", "hour.0-5": "filled", "service.sms": "filled",
        "incident.cell_outage": "filled"}
    assert status["density.rural"]["after"]["share"] == pytest.approx(rural_after)
    # The outage records: attributed to a cell_outage in the augment episodes' own files.
    episodes = data[data["source"].str.contains("/episode-")]
    assert (orig["incident"] == "cell_outage").sum() == 0 and len(episodes) >= 100
    assert (episodes["incident"] == "cell_outage").all() and (data["incident"] == "cell_outage").sum() == len(episodes)
    for g in m["generated"]:
        if g["kind"] == "augment":
            for src in g["sources"]:
                folder, episode = src.split("/")
                t = pd.read_parquet(out / "extra" / folder / "cdr" / f"{episode}-incident.parquet",
                                    columns=["record_id", "incident_id"])
                attributed = set(t.loc[t["incident_id"].notna(), "record_id"])
                assert set(episodes.loc[episodes["source"] == src, "record_id"]) == attributed
    cov = json.loads((out / "coverage_before_after.json").read_text())
    assert cov["before"]["flagged"] == list(status)
    assert cov["after"]["flagged"] == []
    assert m["network"]["neighbour_graph_identical"] is True


def test_weights_recover_the_original_distribution(rebalanced):
    run_dir, out, m = rebalanced
    data = _combined(run_dir, out, m)
    orig = data[data["source"] == "original"]
    assert data["weight"].sum() == pytest.approx(len(data))

    def shares(df, col, w=None):
        if w is None:
            return df[col].astype(str).value_counts(normalize=True)
        g = df.groupby(df[col].astype(str))[w].sum()
        return g / g.sum()

    # The strata themselves: exactly (post-stratification).
    for col in ("serving", "hr", "service", "home_density"):
        o, w = shares(orig, col), shares(data, col, "weight")
        assert (o - w.reindex(o.index, fill_value=0)).abs().max() < 1e-9, col
    # Columns the weights know nothing of: within a tolerance, and much closer than unweighted.
    for col, tol in (("direction", 0.005), ("outcome", 0.005)):
        o, w, u = shares(orig, col), shares(data, col, "weight"), shares(data, col)
        err_w = (o - w.reindex(o.index, fill_value=0)).abs().max()
        err_u = (o - u.reindex(o.index, fill_value=0)).abs().max()
        assert err_w < tol, (col, err_w)
        assert err_w < err_u, (col, err_w, err_u)
    st = pd.read_parquet(out / "strata_weights.parquet")
    assert st["original_records"].sum() == len(orig) and st["combined_records"].sum() == len(data)


def test_extra_runs_are_complete_seeded_apart_and_ids_do_not_collide(rebalanced):
    from telcosim.sim.verify import verify_run

    run_dir, out, m = rebalanced
    gen = m["generated"]
    assert {g["action"] for g in gen} == {"place.rural", "hour", "service.sms", "incident.cell_outage"}
    seeds = [g["seed"] for g in gen] + [m["original"]["seed"]]
    assert len(set(seeds)) == len(seeds)
    cells = pd.read_parquet(run_dir / "cells.parquet", columns=["cell_id", "density", "voice_channels"])
    for g in gen:
        assert (out / g["scenario_file"]).is_file()
        if g["kind"] == "augment":
            assert (out / g["path"] / "episodes.parquet").is_file() and g["episodes"] >= 1
            continue
        assert verify_run(out / g["path"]) == []
        same = pd.read_parquet(out / g["path"] / "cells.parquet", columns=["cell_id", "density", "voice_channels"])
        pd.testing.assert_frame_equal(same, cells)  # the original's cells
    place = next(g for g in gen if g["action"] == "place.rural")
    homes = pd.read_parquet(out / place["path"] / "subscribers.parquet")["home_cell_id"]
    dens = pd.read_parquet(out / place["path"] / "cells.parquet").set_index("cell_id")["density"].astype(str)
    assert (dens.loc[homes] == "rural").all()
    rec = pd.read_parquet(out / "records.parquet", columns=["source", "subscriber_id", "combined_subscriber_id"])
    spans = rec.groupby("source", observed=True)["combined_subscriber_id"].agg(["min", "max"]).sort_values("min")
    assert (spans["min"].to_numpy()[1:] > spans["max"].to_numpy()[:-1]).all()  # disjoint id ranges
    pairs = rec.drop_duplicates(["source", "subscriber_id"])
    assert pairs["combined_subscriber_id"].is_unique
    html = (out / "coverage.html").read_text()
    assert html.count("<svg") >= 4 and "density.rural" in html and "episode(s)" in html
    assert not list(out.parent.glob(".*partial"))


def test_extra_seed_is_deterministic_and_its_own_stream():
    a = rb.extra_seed(1, 0, 1, "hour")
    assert a == rb.extra_seed(1, 0, 1, "hour")
    assert len({a, rb.extra_seed(1, 0, 2, "hour"), rb.extra_seed(1, 1, 1, "hour"), rb.extra_seed(2, 0, 1, "hour"),
                rb.extra_seed(1, 0, 1, "place.rural")}) == 5
    assert 0 <= a < 2**63


def test_nothing_is_left_when_a_run_fails(starved, tmp_path, monkeypatch):
    run_dir, cov = starved
    out = tmp_path / "out"

    def boom(*a, **k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(rb, "run_scenario", boom)  # the extra runs go through it
    with pytest.raises(RuntimeError):
        rb.rebalance(run_dir, load_targets(cov), out)
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_met_targets_generate_nothing_and_existing_out_is_refused(starved, tmp_path, capsys):
    run_dir, _ = starved
    easy = tmp_path / "easy.toml"
    easy.write_text("[density]\nurban = { min_share = 0.01 }\n")
    out = tmp_path / "out"
    assert rebalance_cli.run(parse(["rebalance", str(run_dir), "--target", str(easy), "--out", str(out)])) == 0
    assert "every target is met already" in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert m["generated"] == [] and m["gaps"] == []
    assert rebalance_cli.run(parse(["rebalance", str(run_dir), "--target", str(easy), "--out", str(out)])) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"telcosim: error: --out {out}: already exists and is not empty (choose another --out or pass --overwrite)"


def test_cli_wiring_and_dry_run(starved, tmp_path, capsys):
    from telcosim.cli import main as sim_main

    run_dir, cov = starved
    out = tmp_path / "out"
    assert sim_main(["rebalance", str(run_dir), "--target", str(cov), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "density.rural: under:" in text and "plan: place.rural for density.rural, home_density.rural" in text
    assert "plan: incident.cell_outage for incident.cell_outage: episodes from 'telcosim augment'" in text
    assert not out.exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("[hour]\n7-30 = { min_share = 0.1 }\n")
    assert sim_main(["rebalance", str(run_dir), "--target", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("telcosim: error: bad.toml: hour.7-30: unknown level") and "Traceback" not in err


def test_same_input_same_output_and_capped_gaps_stay_short(starved, tmp_path):
    from telcosim.evaluation.coverage import coverage_metrics

    run_dir, _ = starved
    night = coverage_metrics(run_dir, None)["dimensions"]["hour"]["levels"]
    c = sum(night[str(h)]["count"] for h in range(6))
    cov = tmp_path / "cov.toml"
    cov.write_text(f'[hour]\n"0-5" = {{ min_count = {c + 20} }}\n[service]\nvoice = {{ min_share = 0.6 }}\n'
                   '[incident]\nflood = { min_count = 1 }\n')
    docs = []
    for name in ("a", "b"):
        res = rb.rebalance(run_dir, load_targets(cov), tmp_path / name, max_rounds=1, max_subscribers=200)
        docs.append(res.manifest)
    a, b = docs
    assert [(g["seed"], g["subscribers"], g["records"], g["kept_records"]) for g in a["generated"]] == \
           [(g["seed"], g["subscribers"], g["records"], g["kept_records"]) for g in b["generated"]]
    for g in a["generated"]:
        ma = json.loads((tmp_path / "a" / g["path"] / "manifest.json").read_text())
        mb = json.loads((tmp_path / "b" / g["path"] / "manifest.json").read_text())
        assert ma["files"] == mb["files"]  # byte-identical extra runs (same SHA-256 of every file)
    ra, rb_ = (pd.read_parquet(tmp_path / n / "records.parquet") for n in ("a", "b"))
    pd.testing.assert_frame_equal(ra, rb_)
    status = {g["gap"]: g for g in a["gaps"]}
    assert status["hour.0-5"]["status"] == "filled"
    short = status["service.voice"]
    assert short["status"] == "short" and short["missing_records"] > 0 and "capped" in short["reason"]
    assert short["after"]["share"] > short["before"]["share"]
    flood = status["incident.flood"]
    assert flood["status"] == "not_fillable" and "no 'flood' episodes can be made" in flood["reason"]
