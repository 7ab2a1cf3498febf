"""``telcosim study``: grid and variant expansion, common replicate seeds, KPIs and Student-t
intervals, identical KPI values whatever --workers, the output folder, and bad study files
(hand-made and generated) refused with every problem, its dotted key, exit 2, no traceback."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from telcosim.cli import main
from telcosim.scenarios import study as S
from telcosim.sim.config import BehaviourConfig

# A congested town small enough for a run in a fraction of a second: few channels, busy callers.
TOWN = """\
extends = "small_city"
name = "test_town"

[population]
subscribers = 1200

[network]
sites = 7
radius_km = 1.5
dimensioning = "fixed"
voice_channels = { urban = 2, suburban = 2, rural = 2 }

[behaviour]
voice_per_day = 10.0
"""

STUDY = """\
name = "channels"
scenario = "town.toml"
seed = 11
replicates = 2
kpis = ["blocking_rate", "drop_rate", "failed_attempts", "peak_cell_load", "data_volume_gb",
        "throughput_p95_mbps", "cdr_records"]

[set]
"behaviour.redial_prob" = 0.3

[grid]
"network.voice_channels.urban" = [1, 6]
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def _errors(err: str) -> list[str]:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line]
    assert lines and all(line.startswith("telcosim: error: ") for line in lines), err
    return [line.removeprefix("telcosim: error: ") for line in lines]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("study")
    _write(d / "town.toml", TOWN)
    _write(d / "channels.toml", STUDY)
    return d


# -- the study file ----------------------------------------------------------------------------------

def test_grid_is_the_cartesian_product_in_file_order(tmp_path):
    _write(tmp_path / "town.toml", TOWN)
    f = _write(tmp_path / "g.toml", 'scenario = "town.toml"\nreplicates = 3\n'
               '[set]\npopulation.subscribers = 900\n'
               '[grid]\n"behaviour.redial_prob" = [0.0, 0.5, 1.0]\nnetwork.voice_channels.urban = [3, 5]\n')
    s = S.load_study(f)
    assert s.is_grid and s.varied == ("behaviour.redial_prob", "network.voice_channels.urban")
    assert [v.name for v in s.variants] == [
        "redial_prob=0,urban=3", "redial_prob=0,urban=5", "redial_prob=0.5,urban=3",
        "redial_prob=0.5,urban=5", "redial_prob=1,urban=3", "redial_prob=1,urban=5"]
    assert s.n_runs == 18 and s.name == "g" and s.kpis == tuple(S.KPIS)
    for var, sc, params in zip(s.variants, s.scenarios, s.params, strict=True):
        given = dict(var.overrides)
        assert sc.behaviour.redial_prob == given["behaviour.redial_prob"] == params["behaviour.redial_prob"]
        assert sc.network.voice_channels.urban == given["network.voice_channels.urban"]
        assert sc.population.subscribers == 900  # the fixed set, in nested-table form
        assert sc.network.sites == 7  # the scenario (extends small_city) underneath
    assert s.overrides(0) == ["population.subscribers=900", "behaviour.redial_prob=0.0",
                              "network.voice_channels.urban=3"]


def test_explicit_variants_and_their_parameter_columns(tmp_path):
    _write(tmp_path / "town.toml", TOWN)
    f = _write(tmp_path / "v.toml", 'scenario = "town.toml"\n'
               '[[variant]]\nname = "base"\n'
               '[[variant]]\nname = "more-channels"\nset = { "network.voice_channels.urban" = 8 }\n'
               '[[variant]]\nname = "no_redial"\ndescription = "nobody calls again"\n'
               'set.behaviour.redial_prob = 0.0\n')
    s = S.load_study(f)
    assert not s.is_grid
    assert [v.name for v in s.variants] == ["base", "more-channels", "no_redial"]
    assert s.varied == ("network.voice_channels.urban", "behaviour.redial_prob")
    # A key a variant does not set takes the scenario's value (town: 2 channels; default redial 0.5).
    assert [p["network.voice_channels.urban"] for p in s.params] == [2.0, 8.0, 2.0]
    assert [p["behaviour.redial_prob"] for p in s.params] == [0.5, 0.5, 0.0]
    assert s.variants[2].description == "nobody calls again"


def test_no_grid_is_one_baseline_variant_and_builtins_load(tmp_path):
    s = S.load_study(_write(tmp_path / "b.toml", 'scenario = "small_city"\nreplicates = 2\n'))
    assert [v.name for v in s.variants] == ["baseline"] and s.varied == () and s.n_runs == 2
    assert set(S.builtin_studies()) >= {"voice_channels", "redial"}
    for name in S.builtin_studies():
        s = S.load_study(name)
        assert s.label == f"builtin:studies/{name}" and s.scenario_ref in ("small_city",)
        assert len(s.variants) >= 2 and s.description
    s = S.load_study(S.STUDY_DIR / "voice_channels.toml", replicates=2, seed=5)
    assert (s.replicates, s.seed) == (2, 5)


def test_replicate_seeds_are_common_deterministic_and_prefix_stable():
    a = S.replicate_seeds(11, 5)
    assert a == S.replicate_seeds(11, 5) and len(set(a)) == 5
    assert S.replicate_seeds(11, 3) == a[:3]  # more replicates keep the earlier seeds
    assert S.replicate_seeds(12, 5) != a
    assert all(0 <= x < 2**63 for x in a)
    ss = np.random.SeedSequence(11, spawn_key=(4,))
    assert a[4] == int(ss.generate_state(1, dtype=np.uint64)[0]) >> 1


# -- statistics and KPIs -------------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 5, 12, 40])
def test_ci95_is_the_student_t_interval(n):
    x = np.random.default_rng(n).lognormal(0.0, 1.0, n)
    got = S.ci95(x)
    lo, hi = stats.t.interval(0.95, n - 1, loc=x.mean(), scale=stats.sem(x))
    assert got["n"] == n
    assert got["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert got["sd"] == pytest.approx(x.std(ddof=1), rel=1e-12)
    assert got["ci95_low"] == pytest.approx(lo, rel=1e-10)
    assert got["ci95_high"] == pytest.approx(hi, rel=1e-10)
    assert got["ci95_half"] == pytest.approx((hi - lo) / 2, rel=1e-10)


def test_ci95_leaves_out_nan_and_needs_two_values():
    got = S.ci95([1.0, math.nan, 3.0])
    lo, hi = stats.t.interval(0.95, 1, loc=2.0, scale=stats.sem([1.0, 3.0]))
    assert got["n"] == 2 and got["ci95_low"] == pytest.approx(lo) and got["ci95_high"] == pytest.approx(hi)
    one = S.ci95([4.0])
    assert one["n"] == 1 and one["mean"] == 4.0 and math.isnan(one["sd"]) and math.isnan(one["ci95_low"])
    assert S.ci95([])["n"] == 0 and math.isnan(S.ci95([])["mean"])


def test_run_kpis_from_a_hand_made_kpi_table():
    t = pa.table({
        "cell_id": pa.array([0, 1, 2, 0, 1, 2], pa.int32()),
        "voice_attempts": pa.array([10, 20, 0, 30, 40, 0], pa.int32()),
        "voice_completed": pa.array([8, 15, 0, 25, 30, 0], pa.int32()),
        "voice_blocked": pa.array([1, 3, 0, 2, 6, 0], pa.int32()),
        "voice_dropped": pa.array([1, 0, 0, 1, 2, 0], pa.int32()),
        "voice_failed": pa.array([0, 2, 0, 2, 2, 0], pa.int32()),
        "busy_channels_mean": pa.array([1.0, 3.0, 0.0, 2.0, 3.5, 0.0]),
        "data_volume_mb": pa.array([100.0, 200.0, 0.0, 300.0, 400.0, 0.0]),
        "throughput_mean_mbps": pa.array([5.0, None, None, 10.0, 20.0, 1.0]),
    })
    k = S.run_kpis(t, {"cdr": 123}, np.array([4, 5, 0]))
    assert k["voice_attempts"] == 100 and k["failed_attempts"] == 6
    assert k["blocking_rate"] == pytest.approx(12 / 100)
    assert k["drop_rate"] == pytest.approx(4 / (78 + 4))
    assert k["peak_cell_load"] == pytest.approx(3.5 / 5)  # the cell without channels is left out
    assert k["peak_carried_erlang"] == 3.5
    assert k["data_volume_gb"] == pytest.approx(1.0)
    assert k["throughput_p95_mbps"] == pytest.approx(np.percentile([5.0, 10.0, 20.0, 1.0], 95))
    assert k["cdr_records"] == 123
    empty = S.run_kpis(t.slice(2, 1), {}, np.array([4, 5, 0]))
    assert math.isnan(empty["blocking_rate"]) and math.isnan(empty["drop_rate"])
    assert math.isnan(empty["peak_cell_load"]) and math.isnan(empty["throughput_p95_mbps"])


def _fake_runs(study, seed=0):
    """A runs table for ``study`` with made-up KPI values (no simulation)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, var in enumerate(study.variants):
        for r, sd in enumerate(study.seeds):
            rows.append({"variant": var.name, **study.params[i], "replicate": r, "seed": sd,
                         **{k: float(rng.uniform(0, 1)) for k in study.kpis}})
    return pd.DataFrame(rows)


def test_summary_and_plots_of_a_two_key_grid_and_of_named_variants(tmp_path):
    _write(tmp_path / "town.toml", TOWN)
    grid = S.load_study(_write(tmp_path / "g.toml", 'scenario = "town.toml"\nreplicates = 3\n'
                               'kpis = ["blocking_rate"]\n[grid]\n"behaviour.redial_prob" = [0.0, 1.0]\n'
                               '"network.voice_channels.urban" = [3, 5]\n'))
    runs = _fake_runs(grid)
    summary = S.summarize(grid, runs)
    assert len(summary) == 4 and list(summary["n"]) == [3] * 4
    for _, row in summary.iterrows():
        x = runs[runs["variant"] == row["variant"]]["blocking_rate"].to_numpy()
        assert row["mean"] == pytest.approx(x.mean()) and row["sd"] == pytest.approx(x.std(ddof=1))
    S.plot_kpi(grid, summary, "blocking_rate", tmp_path / "grid.svg")
    svg = (tmp_path / "grid.svg").read_text()
    # x axis: the first key; one line per value of the second, with the key as the legend title
    assert ">behaviour.redial_prob (probability)</text>" in svg
    assert ">network.voice_channels.urban (channels per cell)</text>" in svg
    assert ">3</text>" in svg and ">5</text>" in svg

    named = S.load_study(_write(tmp_path / "v.toml", 'scenario = "town.toml"\nreplicates = 2\n'
                                'kpis = ["drop_rate"]\n[[variant]]\nname = "base"\n[[variant]]\n'
                                'name = "both"\nset = { "behaviour.redial_prob" = 0.0, "network.sites" = 4 }\n'))
    S.plot_kpi(named, S.summarize(named, _fake_runs(named)), "drop_rate", tmp_path / "named.svg")
    svg = (tmp_path / "named.svg").read_text()
    assert ">base</text>" in svg and ">both</text>" in svg and ">variant</text>" in svg
    text = S.format_summary(named, S.summarize(named, _fake_runs(named)))
    assert "drop_rate  [fraction]" in text and "  base " in text and "(2)" in text


# -- running ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_runs(study_dir):
    """The same study with --workers 1 and (kept runs) --workers 2."""
    out1, out2 = study_dir / "w1", study_dir / "w2"
    code1, stdout1, err1 = _cli(["study", str(study_dir / "channels.toml"), "--out", str(out1), "--workers", "1"])
    code2, _, err2 = _cli(["study", str(study_dir / "channels.toml"), "--out", str(out2), "--workers", "2",
                           "--keep-runs", "--quiet"])
    assert code1 == 0, err1
    assert code2 == 0, err2
    return out1, out2, stdout1


KPI_COLS = ["blocking_rate", "drop_rate", "failed_attempts", "peak_cell_load", "data_volume_gb",
            "throughput_p95_mbps", "cdr_records"]


def test_same_kpis_whatever_the_workers(two_runs):
    out1, out2, _ = two_runs
    a, b = pq.read_table(out1 / "runs.parquet"), pq.read_table(out2 / "runs.parquet")
    cols = ["variant", "network.voice_channels.urban", "replicate", "seed", *KPI_COLS]
    assert a.select(cols).equals(b.select(cols))
    assert a.num_rows == 4
    # The summary and the plots do not depend on the workers either (byte for byte).
    assert (out1 / "summary.csv").read_bytes() == (out2 / "summary.csv").read_bytes()
    for k in KPI_COLS:
        assert (out1 / "plots" / f"{k}.svg").read_bytes() == (out2 / "plots" / f"{k}.svg").read_bytes()


def test_outputs_are_complete_and_sane(two_runs, study_dir):
    out1, out2, stdout = two_runs
    runs = pd.read_parquet(out1 / "runs.parquet")
    assert list(runs.columns) == ["variant", "network.voice_channels.urban", "replicate", "seed", *KPI_COLS,
                                  "wall_s"]
    assert list(runs["variant"]) == ["urban=1", "urban=1", "urban=6", "urban=6"]
    # Common random numbers: replicate r has the same seed in every variant.
    assert list(runs["seed"]) == S.replicate_seeds(11, 2) * 2
    assert (runs["wall_s"] > 0).all() and runs["cdr_records"].dtype == np.int64
    csv = pd.read_csv(out1 / "runs.csv")
    assert list(csv.columns) == list(runs.columns)
    np.testing.assert_allclose(csv[KPI_COLS].to_numpy(float), runs[KPI_COLS].to_numpy(float), rtol=1e-9)

    # More channels, less blocking: every replicate, and the means.
    by = runs.pivot(index="replicate", columns="variant", values="blocking_rate")
    assert (by["urban=1"] > by["urban=6"]).all()
    assert by["urban=1"].min() > 0.02
    assert ((runs["blocking_rate"] >= 0) & (runs["blocking_rate"] <= 1)).all()
    assert ((runs["peak_cell_load"] > 0) & (runs["peak_cell_load"] <= 1)).all()

    summary = pd.read_csv(out1 / "summary.csv")
    assert len(summary) == 2 * len(KPI_COLS)
    row = summary[(summary["variant"] == "urban=1") & (summary["kpi"] == "blocking_rate")].iloc[0]
    x = runs[runs["variant"] == "urban=1"]["blocking_rate"].to_numpy()
    lo, hi = stats.t.interval(0.95, 1, loc=x.mean(), scale=stats.sem(x))
    assert (row["n"], row["mean"]) == (2, pytest.approx(x.mean()))
    assert (row["ci95_low"], row["ci95_high"]) == (pytest.approx(lo), pytest.approx(hi))

    js = json.loads((out1 / "summary.json").read_text())
    assert js["study"] == "channels" and js["replicate_seeds"] == S.replicate_seeds(11, 2)
    assert js["fixed"] == {"behaviour.redial_prob": 0.3} and js["varied"] == ["network.voice_channels.urban"]
    v0 = js["variants"][0]
    assert v0["name"] == "urban=1" and v0["kpis"]["blocking_rate"]["mean"] == pytest.approx(x.mean())
    assert tomllib.loads((out1 / "study.toml").read_text())["seed"] == 11

    for k in KPI_COLS:
        svg = (out1 / "plots" / f"{k}.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
        # the labelled axes (text is kept as SVG text)
        assert ">network.voice_channels.urban (channels per cell)</text>" in svg
        assert f">{S.KPIS[k].label}</text>" in svg
    assert "blocking_rate" in stdout and "urban=1" in stdout and "4 runs" in stdout

    # --keep-runs: one complete run folder per (variant, seed); none without it.
    kept = sorted(p.relative_to(out2 / "runs") for p in (out2 / "runs").glob("*/*/manifest.json"))
    seeds = S.replicate_seeds(11, 2)
    assert kept == sorted(Path(v) / str(s) / "manifest.json" for v in ("urban=1", "urban=6") for s in seeds)
    assert not (out1 / "runs").exists()
    assert not list(study_dir.glob(".*partial*"))  # nothing left half-written


def test_an_incident_parameter_can_be_varied(tmp_path):
    """A scenario with incidents runs through the incident runner; an indexed key varies it."""
    _write(tmp_path / "town.toml", TOWN + '\n[[incidents]]\nkind = "site_outage"\nname = "centre down"\n'
           'start = "2024-03-05T10:00:00"\nduration_min = 240\ncentre_km = [0.0, 0.0]\nradius_km = 0.3\n'
           'on_active = "handover"\ncoverage_overlap = 0.5\n')
    f = _write(tmp_path / "outage.toml", 'scenario = "town.toml"\nseed = 5\nreplicates = 1\n'
               'kpis = ["failed_attempts", "blocking_rate"]\n'
               '[grid]\n"incidents[0].coverage_overlap" = [0.0, 1.0]\n')
    code, _, err = _cli(["study", str(f), "--out", str(tmp_path / "out"), "--workers", "1", "--quiet"])
    assert code == 0, err
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    assert list(runs["incidents[0].coverage_overlap"]) == [0.0, 1.0]
    # Without neighbour coverage the calls in the outage area fail; with it they load the neighbours.
    failed = dict(zip(runs["variant"], runs["failed_attempts"], strict=True))
    assert failed["coverage_overlap=0"] > failed["coverage_overlap=1"]
    # Overrides set fields of the scenario's incidents; they cannot add one.
    g = _write(tmp_path / "none.toml", 'scenario = "small_city"\n[grid]\n"incidents[0].radius_km" = [1.0]\n')
    code, _, err = _cli(["study", str(g), "--check"])
    assert code == 2 and _errors(err)[0].startswith(f"{g}: grid.incidents[0].radius_km: ")


def test_existing_out_is_refused_then_overwritten(two_runs, study_dir):
    out1 = two_runs[0]
    code, _, err = _cli(["study", str(study_dir / "channels.toml"), "--out", str(out1), "--quiet"])
    assert code == 2 and "already exists and is not empty" in _errors(err)[0]
    code, _, err = _cli(["study", str(study_dir / "channels.toml"), "--out", str(out1), "--quiet",
                         "--overwrite", "--replicates", "1", "--workers", "1"])
    assert code == 0, err
    assert len(pd.read_parquet(out1 / "runs.parquet")) == 2


def test_list_check_and_usage():
    code, out, _ = _cli(["study", "--list"])
    assert code == 0 and "voice_channels" in out and "redial" in out
    code, out, _ = _cli(["study", "redial", "--check"])
    assert code == 0 and "builtin:studies/redial: ok (10 variant(s) x 4 replicate(s) = 40 runs" in out
    code, _, err = _cli(["study", "redial"])
    assert code == 2 and "--out" in _errors(err)[0]
    code, _, err = _cli(["study", "voice_chanels", "--check"])
    assert code == 2 and _errors(err) == [
        "voice_chanels: no such study file or built-in study (did you mean 'voice_channels'? "
        "built-in studies: redial, voice_channels)"]
    code, _, err = _cli(["study", "redial", "--check", "--workers", "0"])
    assert code == 2 and "--workers" in err and "Traceback" not in err


# -- bad study files ---------------------------------------------------------------------------------

BAD = [
    # (study text, every expected problem: "dotted.key: start of the message")
    ('scenaro = "small_city"\n', ["scenaro: unknown key (did you mean 'scenario'?)", "scenario: missing"]),
    ('scenario = "small_city"\nseed = -1\nreplicates = 0\n',
     ["seed: -1 is out of range", "replicates: 0 is out of range"]),
    ('scenario = "small_city"\nreplicates = "five"\nkpis = ["blocking", "drop_rate", "drop_rate"]\n',
     ["replicates: 'five' is not an integer", "kpis[0]: 'blocking' is not a KPI (did you mean 'blocking_rate'?)",
      "kpis[2]: 'drop_rate' is listed twice"]),
    ('scenario = "smal_city"\n', ["scenario: 'smal_city': no such built-in scenario or scenario file"]),
    ('scenario = "small_city"\n[grid]\n"behaviour.redial_prob" = 0.5\n"network.sites" = []\n',
     ["grid.behaviour.redial_prob: 0.5 is not a list of values", "grid.network.sites: an empty list"]),
    ('scenario = "small_city"\n[set]\n"network.dimensioning" = "fixed"\n[grid]\n"network.voice_channels.urban" = [2, -1, 4]\n'
     '"network.voice_chanels.rural" = [1]\n"behaviour.redial_prob" = [0.5, 1.5]\n',
     ["grid.network.voice_channels.urban: -1.0 is out of range (must be >= 0)",
      "grid.network.voice_chanels.rural: network.voice_chanels: unknown key (did you mean 'voice_channels'?)",
      "grid.behaviour.redial_prob: 1.5 is out of range (must be <= 1)"]),
    ('scenario = "small_city"\n[set]\n"population.subscribers" = 0\nseed = 3\n'
     '[grid]\n"population.subscribers.x" = [10]\n"network.sites" = [3, 3]\n',
     ["set.seed: set by the study", "grid.network.sites: 3 listed twice",
      "grid.population.subscribers.x: 'subscribers' is not a table",
      "set.population.subscribers: 0 is out of range (must be >= 1)"]),
    ('scenario = "small_city"\n[set]\n"network.sites" = 5\n[grid]\n"network.sites" = [3, 4]\n',
     ["grid.network.sites: also given in set"]),
    ('scenario = "small_city"\n[[variant]]\nname = "a b"\nset = { "behaviour.redial_prob" = 2.0, x = [1] }\n'
     '[[variant]]\nnme = "b"\n[[variant]]\nname = "c"\nset.network.voice_channels.urban = -2\n',
     ["variant[1].name: 'a b' is not allowed", "variant[1].set.x: a list is not an override value",
      "variant[2].nme: unknown key (did you mean 'name'?)", "variant[2].name: missing",
      "variant[1].set.behaviour.redial_prob: 2.0 is out of range (must be <= 1)",
      "variant[3].set.network.voice_channels.urban: -2.0 is out of range (must be >= 0) (variant 'c')"]),
    ('scenario = "small_city"\n[[variant]]\nname = "a"\n[[variant]]\nname = "a"\n[grid]\nx = [1]\n',
     ["grid: give either [grid] or [[variant]] tables, not both"]),
    ('scenario = "small_city"\nvariant = [1, 2]\n', ["variant: [1, 2] is not a list of tables"]),
    ('scenario = "small_city"\n[[variant]]\nname = "a"\n[[variant]]\nname = "a"\n',
     ["variant[2].name: 'a' is used by an earlier variant"]),
    ('scenario = "small_city"\nreplicates = 10000\n[grid]\n"network.sites" = '
     f'{list(range(1, 12))}\n', ["grid: 11 variants x 10000 replicates = 110000 runs"]),
    ("scenario = [\n", ["not valid TOML"]),
    # a check across keys that only one grid value fails names that variant
    ('scenario = "small_city"\n[grid]\n"network.urban_km" = [1.0, 5.0]\n',
     ["scenario 'small_city': builtin:small_city: network.suburban_km: 2.2 is smaller than network.urban_km "
      "(5.0) (variant 'urban_km=5')"]),
]


@pytest.mark.parametrize("text,expected", BAD)
def test_bad_study_files_report_every_problem(tmp_path, text, expected):
    f = _write(tmp_path / "study.toml", text)
    code, out, err = _cli(["study", str(f), "--out", str(tmp_path / "out"), "--quiet"])
    lines = _errors(err)
    assert code == 2 and out == ""
    for e in expected:
        assert any(line.startswith(f"{f}: {e}") for line in lines), (e, lines)
    assert len(lines) == len(expected), lines
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*partial*"))


def test_a_bad_scenario_file_is_named_with_the_study(tmp_path):
    _write(tmp_path / "town.toml", 'extends = "small_city"\n[network]\nsites = 0\n')
    f = _write(tmp_path / "s.toml", 'scenario = "town.toml"\n[grid]\n"network.radius_km" = [1.0, 2.0]\n')
    code, _, err = _cli(["study", str(f), "--check"])
    assert code == 2
    assert _errors(err) == [f"{f}: scenario 'town.toml': town.toml: network.sites: 0 is out of range (must be >= 1)"]


_KEY = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10).filter(
    lambda k: k not in S.TOP_KEYS and k not in S.KPIS)
_BEHAVIOUR = {f.name for f in dataclasses.fields(BehaviourConfig)}
_PROBLEMS = {
    # name -> strategy of (TOML line(s) in the top table, or in [grid]; the dotted key reported)
    "unknown": _KEY.map(lambda k: (f"{k} = 1", None, k)),
    "seed": st.one_of(st.integers(max_value=-1), st.just('"x"'), st.just("1.5")).map(
        lambda v: (f"seed = {v}", None, "seed")),
    "replicates": st.one_of(st.integers(max_value=0), st.integers(min_value=S.MAX_REPLICATES + 1),
                            st.just("true")).map(lambda v: (f"replicates = {v}", None, "replicates")),
    "kpis": _KEY.map(lambda k: (f'kpis = ["{k}"]', None, "kpis[0]")),
    "grid_not_list": st.integers().map(lambda v: (None, f'"behaviour.redial_max" = {v}',
                                                  "grid.behaviour.redial_max")),
    "grid_out_of_range": st.floats(min_value=1.01, max_value=1e6).map(
        lambda v: (None, f'"mobility.stickiness" = [0.5, {v!r}]', "grid.mobility.stickiness")),
    "grid_unknown_key": _KEY.filter(lambda k: f"{k}x" not in _BEHAVIOUR).map(lambda k: (None, f'"behaviour.{k}x" = [1]', f"grid.behaviour.{k}x")),
}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(sorted(_PROBLEMS)), min_size=1, max_size=4, unique=True).flatmap(
    lambda names: st.tuples(*(_PROBLEMS[n] for n in names))))
def test_generated_bad_study_files(tmp_path, problems):
    top = ['scenario = "small_city"']
    grid = ['"network.sites" = [7]']
    for t, g, _ in problems:
        top += [t] if t else []
        grid += [g] if g else []
    f = _write(tmp_path / "gen.toml", "\n".join(top) + "\n[grid]\n" + "\n".join(grid) + "\n")
    code, out, err = _cli(["study", str(f), "--check"])
    lines = _errors(err)
    assert code == 2 and out == ""
    for _, _, key in problems:
        assert any(line.startswith(f"{f}: {key}: ") for line in lines), (key, lines)
    assert len(lines) == len(problems), lines
