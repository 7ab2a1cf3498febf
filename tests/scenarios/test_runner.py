"""The one run path (telcosim.scenarios.runner.run): what it honours, what it refuses, and that a
run with incidents builds its network and population once."""

from __future__ import annotations

import pytest

from telcosim import scenarios
from telcosim.cli import main
from telcosim.scenarios import runner
from telcosim.sim import engine
from telcosim.sim.engine import Simulation
from telcosim.sim.errors import ConfigError
from telcosim.sim.sinks import RunWriter

SMALL = ["population.subscribers=300", "network.sites=30", "network.radius_km=3.0"]


def test_an_incident_run_builds_network_and_population_once(tmp_path, monkeypatch):
    built = {"network": 0, "population": 0}

    def counted(name, f):
        def wrapper(*a, **k):
            built[name] += 1
            return f(*a, **k)
        return wrapper

    monkeypatch.setattr(engine, "build_network", counted("network", engine.build_network))
    monkeypatch.setattr(engine, "build_population", counted("population", engine.build_population))
    out = tmp_path / "run"
    assert main(["run", "site_outage_peak", "--out", str(out), "--baseline", "--quiet",
                 *[a for s in SMALL for a in ("--set", s)]]) == 0
    # The run and its baseline share them (Simulation.baseline), and the CLI sizes its progress
    # bar from the same prepared simulation. (Loading the scenario checks its incidents' cells
    # and sites against a network of its own, in scenarios.loader; that one is not counted here.)
    assert built == {"network": 1, "population": 1}
    assert (tmp_path / "run.baseline" / "manifest.json").is_file()


def test_a_bare_simulation_refuses_incidents_it_would_ignore():
    sc = scenarios.load("site_outage_peak", SMALL)
    with pytest.raises(ConfigError, match="incident.*a bare Simulation does not apply"):
        Simulation(sc).run(RunWriter(None, {}))
    prepared = runner.prepare(sc)
    assert prepared.perturbations is not None and prepared.role == "incidents"
    base = prepared.baseline()
    assert base.perturbations is None and base.role == "baseline"
    assert base.network is prepared.network and base.population is prepared.population


def test_what_the_path_cannot_honour_is_refused(tmp_path):
    incidents = scenarios.load("site_outage_peak", SMALL)
    with pytest.raises(ConfigError, match="resume: not available for site_outage_peak"):
        runner.run(incidents, tmp_path / "a", resume=True)
    plain = scenarios.load("small_city", SMALL)
    with pytest.raises(ConfigError, match="no incidents, so the run is its own baseline"):
        runner.run(plain, tmp_path / "b", baseline_out=tmp_path / "b.base")
    assert not list(tmp_path.iterdir())


def test_the_baseline_result_is_kept_only_when_asked(tmp_path):
    sc = scenarios.load("site_outage_peak", SMALL)
    kept = runner.run(sc, tmp_path / "a", baseline_out=tmp_path / "a.base")
    assert kept.baseline is not None and kept.baseline.out == tmp_path / "a.base"
    assert kept.rows["incidents"] == 1
    alone = runner.run(sc, tmp_path / "b")
    assert alone.baseline is None and not (tmp_path / "b.base").exists()
    assert alone.rows == kept.rows


@pytest.mark.parametrize(("name", "flag", "says"), [
    ("small_city", "--baseline", "baseline: small_city has no incidents"),
    ("site_outage_peak", "--resume", "resume: not available for site_outage_peak"),
])
def test_the_command_refuses_before_building_anything(tmp_path, monkeypatch, capsys, name, flag, says):
    def built(*a, **k):
        raise AssertionError("the population was built before the refusal")

    monkeypatch.setattr(engine, "build_population", built)
    code = main(["run", name, "--out", str(tmp_path / "run"), flag, "--quiet", *[a for s in SMALL for a in ("--set", s)]])
    assert code == 2 and says in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
