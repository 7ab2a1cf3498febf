"""A population drawn from the DP-SGD behaviour generator: `telcosim models behaviour`, then a
scenario with population.behaviour_model."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from telcosim.cli import main
from telcosim.scenarios.runner import run as run_scenario
from telcosim.sim import config
from telcosim.sim.engine import Simulation
from telcosim.sim.errors import ConfigError
from telcosim.sim.sinks import RunWriter
from tests.conftest import small_scenario


@pytest.fixture(scope="module")
def model_dir(small_run, tmp_path_factory):
    _, run_dir, _ = small_run
    out = tmp_path_factory.mktemp("behaviour") / "model"
    assert main(["models", "behaviour", str(run_dir), "--out", str(out), "--epsilon", "4"]) == 0
    return out


def test_cli_writes_a_model_with_its_epsilon(model_dir, small_run, capsys):
    side = json.loads((model_dir / "model.json").read_text())
    assert side["epsilon"] is not None and side["epsilon"] <= 4.0 + 1e-6
    _, run_dir, _ = small_run
    assert main(["models", "behaviour", str(run_dir), "--out", str(model_dir)]) == 2
    assert "exists; give --overwrite" in capsys.readouterr().err


def test_population_drawn_from_the_model(model_dir, tmp_path):
    sc = small_scenario(**{"population.subscribers": 3000, "population.behaviour_model": str(model_dir)})
    # The simulator alone cannot load it (it imports no learned model): it refuses and says how.
    with pytest.raises(ConfigError, match="population.behaviour_model needs the learned behaviour generator"):
        Simulation(sc).run(RunWriter(None, {}, "zstd"))
    run_scenario(sc, tmp_path / "a")
    subs = pq.read_table(tmp_path / "a" / "subscribers.parquet").to_pandas()
    cdr = pq.read_table(tmp_path / "a" / "cdr").to_pandas()
    # Activity is the mean of the drawn per-service multipliers (mean 1), not the lognormal.
    assert subs["activity"].mean() == pytest.approx(1.0, abs=1e-9)
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    learned = man["learned_generators"]["behaviour_model"]
    assert learned["epsilon"] <= 4.0 + 1e-6 and learned["data_fingerprint"].startswith("sha256:")
    assert learned["model"] == "behaviour" and learned["training_rows"] > 0
    plain = config.load(None, ["population.subscribers=3000"])
    from telcosim.sim.population import build_population

    lognormal = build_population(plain.population, Simulation(plain).network, plain.seed).activity
    assert not np.allclose(subs["activity"].to_numpy(), lognormal)
    # Per-service rates follow the drawn multipliers: data sessions per subscriber rank-correlate
    # with the subscriber's data activity.
    from telcosim.scenarios.runner import attach_learned

    sim = Simulation(sc)
    attach_learned(sim)
    data_mult = sim.population.activity * sim.population.service_activity[:, 2]
    n_data = np.bincount(cdr.loc[(cdr["service"] == "data"), "subscriber_id"], minlength=3000)
    from scipy.stats import spearmanr

    assert spearmanr(data_mult, n_data).statistic > 0.5
    # Same seed, same output.
    run_scenario(sc, tmp_path / "b")
    for part in sorted((tmp_path / "a" / "cdr").rglob("*.parquet"))[:3]:
        assert part.read_bytes() == (tmp_path / "b" / part.relative_to(tmp_path / "a")).read_bytes()
