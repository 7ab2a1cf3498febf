"""telcosim augment: labelled incident episodes with baselines, weights and provenance."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from telcosim.cli import main


def test_augment_writes_labelled_episodes(tmp_path, capsys):
    out = tmp_path / "aug"
    rc = main(["augment", "--kind", "site_outage", "--episodes", "3", "--out", str(out), "--quiet",
               "--set", "population.subscribers=1500", "--seed", "7"])
    assert rc == 0, capsys.readouterr().err
    man = json.loads((out / "manifest.json").read_text())
    eps = pq.read_table(out / "episodes.parquet").to_pandas()
    assert len(eps) == 3 and man["episodes"] == 3
    assert set(man["sampling_distributions"]) == {"place", "start", "duration_min", "severity"}
    # Weight = natural incidents expected in the window: rate x sites x window / year.
    nat = man["natural_frequency"]
    hours = (eps["window_end"] - eps["window_start"]).dt.total_seconds() / 3600
    expected = nat["per_year"] * nat["units_in_network"] * hours / (365 * 24)
    assert np.allclose(eps["weight"], expected)
    cdr = pq.read_table(out / "cdr").to_pandas()
    assert {"episode_id", "variant", "provenance", "incident_id"} <= set(cdr.columns)
    assert set(cdr["provenance"].astype(str)) == {"telcosim-augment"}
    for k, ep in eps.iterrows():
        rows = cdr[cdr["episode_id"] == k]
        inc, base = rows[rows["variant"] == "incident"], rows[rows["variant"] == "baseline"]
        assert len(inc) and len(base)
        # Only the incident variant carries labels, and only inside the window.
        assert base["incident_id"].isna().all()
        assert inc["incident_id"].notna().any()
        assert (rows["start_time"] >= ep["window_start"]).all() and (rows["start_time"] < ep["window_end"]).all()
        params = json.loads(ep["params"])
        assert params["on_active"] in ("handover", "drop") and 0 <= params["coverage_overlap"] <= 0.8
    # Same seed, same episodes.
    again = tmp_path / "again"
    assert main(["augment", "--kind", "site_outage", "--episodes", "3", "--out", str(again), "--quiet",
                 "--set", "population.subscribers=1500", "--seed", "7"]) == 0
    eps2 = pq.read_table(again / "episodes.parquet").to_pandas()
    assert eps2[["start", "end", "seed", "params"]].equals(eps[["start", "end", "seed", "params"]])


def test_augment_bad_input(tmp_path, capsys):
    for argv in (["--kind", "volcano", "--episodes", "2"], ["--kind", "site_outage", "--episodes", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(["augment", *argv, "--out", str(tmp_path / "a")])
        assert exc.value.code == 2
    assert main(["augment", "--kind", "site_outage", "--episodes", "1", "--out", str(tmp_path / "a"),
                 "--scenario", "site_outage_peak"]) == 2
    err = capsys.readouterr().err
    assert "already has incidents" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()
