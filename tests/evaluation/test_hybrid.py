"""Hybrid sets (evaluation/hybrid.py, ``telcosim hybrid``): no real stratum under k and no real id in
the output, the synthetic fill and incidents, the manifest, bad input refused with nothing written.

The "real" records here are a telcosim run (the session's small run): no public set has real
timestamped CDRs (docs/hybrid.md). The synthetic source is a smaller run of the same network with
another seed and a labelled site outage."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import telcosim
from telcosim.cli import main
from telcosim.evaluation import hybrid as H
from telcosim.realdata.readers import read_cdr
from telcosim.scenarios.runner import run
from tests.conftest import small_scenario

OUTAGE = {"kind": "site_outage", "name": "down", "start": "2024-03-05T18:00:00", "duration_min": 90, "sites": [0],
          "on_active": "drop", "coverage_overlap": 0.3}


@pytest.fixture(scope="module")
def sources(small_run, tmp_path_factory):
    """(real run folder, synthetic run folder, key file, work folder)."""
    work = tmp_path_factory.mktemp("hybrid")
    sc = dataclasses.replace(small_scenario(**{"population.subscribers": 1000, "seed": 2}), incidents=(OUTAGE,))
    run(sc, work / "syn")
    key = work / "hybrid.key"
    key.write_bytes(hashlib.sha256(b"telcosim hybrid test key").digest())
    return small_run[1], work / "syn", key, work


@pytest.fixture(scope="module")
def built(sources):
    real, syn, key, work = sources
    b = H.hybrid(real, work / "h", synthetic=syn, key_file=key)
    df = pq.read_table(work / "h" / "cdr", partitioning=None).to_pandas()
    df["start_time"] = df.start_time.dt.tz_convert("Europe/Rome")
    return b, df


@pytest.fixture(scope="module")
def parts(sources):
    """The real records read once (and the first 1,500 subscribers' alone, for the quicker builds),
    the synthetic source and the cell layout."""
    real, syn, key, _ = sources
    df, tz = H.read_cdr_frame(real, "real")
    return (df, df[df.subscriber_id < 1500], tz, H.open_synthetic(syn, H._day0(df.start_time), tz),
            H.read_layout(real / "cells.parquet"), key.read_bytes())


def _strata(df: pd.DataFrame, columns) -> pd.DataFrame:
    return H.strata_values(df, tuple(columns))


def _under_k(df: pd.DataFrame, columns, k: int) -> pd.Series:
    """Strata of the output's real rows with fewer than k distinct subscribers."""
    r = df[df.provenance.astype(str) == "real"]
    per = pd.concat([_strata(r, columns), r.subscriber_id.rename("sub")], axis=1).groupby(list(columns)).sub.nunique()
    return per[per < k]


def test_no_real_stratum_under_k_appears(built):
    b, df = built
    assert b.manifest["strata"]["suppressed"] > 0  # the small run has strata to suppress: the check has teeth
    assert _under_k(df, ("service", "hour", "cell"), 5).empty


def test_a_crafted_rare_stratum_is_suppressed(parts, tmp_path):
    _, df, tz, synth, layout, key = parts
    have = set(map(tuple, H.strata_values(df, ("service", "hour", "cell")).drop_duplicates().to_numpy().tolist()))
    busy = df.cell_id.value_counts().index[0]
    hour = next(h for h in range(24) if ("voice", h, busy) not in have)  # a stratum nobody is in
    rows = df[(df.service == "voice") & (df.cell_id == busy)].head(2).copy()
    rows["subscriber_id"] = df.subscriber_id.unique()[:2]  # two distinct subscribers: under k = 5
    rows["start_time"] = rows.start_time.dt.normalize() + pd.Timedelta(hours=hour, minutes=7)
    rows["record_id"] = df.record_id.max() + 1 + np.arange(2)
    crafted = pd.concat([df, rows], ignore_index=True)
    table = pa.Table.from_pandas(crafted, preserve_index=False)
    table = table.cast(pa.schema([f if f.name not in ("counterpart_id", "incident_id") else pa.field(f.name, pa.int32())
                                  for f in table.schema]))
    pq.write_table(table, tmp_path / "crafted.parquet")
    source, tz = H.read_cdr_frame(tmp_path / "crafted.parquet", "real")  # through the reader, as a user's file
    for k, present in ((5, False), (2, True)):
        b = H.build(source, tz, synth, H.Policy(k=k), key, real_layout=layout)
        out = b.table.to_pandas()
        out["start_time"] = out.start_time.dt.tz_convert(tz)
        real_rows = out[out.provenance.astype(str) == "real"]
        s = H.strata_values(real_rows, ("service", "hour", "cell"))
        hit = ((s.service == "voice") & (s.hour == hour) & (s.cell == busy)).any()
        assert hit == present, k  # k = 2 lets the two through: the check would see a leak
        assert _under_k(out, ("service", "hour", "cell"), k).empty


def test_rare_cells_are_merged(parts):
    _, df, tz, synth, layout, key = parts
    p = H.Policy(k=5, cell_min_subscribers=10**6)  # no cell has that many: every cell goes to "other"
    out = H.build(df, tz, synth, p, key, real_layout=layout).table
    assert set(out.column("cell_id").unique().to_pylist()) == {H.OTHER_CELL}
    # a site with enough subscribers takes in its cells instead
    per_cell = df.groupby("cell_id").subscriber_id.nunique()
    p = H.Policy(k=5, cell_min_subscribers=int(per_cell.median()) + 1)
    m = H.cell_map(H.coarsen_values(df, p), p, layout)
    site = layout.cells.site_id
    assert any(v != H.OTHER_CELL for v in m.values())
    assert all(v == H.OTHER_CELL or site[v] == site[c] for c, v in m.items())


def test_no_real_subscriber_id_appears(sources, built):
    real, _, key, work = sources
    b, df = built
    src = pq.read_table(real / "cdr", columns=["subscriber_id", "counterpart_id"], partitioning=None)
    real_ids = set(src.column("subscriber_id").to_pylist()) | set(src.column("counterpart_id").drop_null().to_pylist())
    out_ids = set(df.subscriber_id) | set(df.counterpart_id.dropna().astype(int))
    assert not out_ids & real_ids
    prov = df.provenance.astype(str)
    assert not set(df.subscriber_id[prov == "real"]) & set(df.subscriber_id[prov == "synthetic"])
    assert df.record_id.tolist() == list(range(len(df)))
    # the same key gives the same pseudonyms, another key other ones; a collision draws again
    ids = np.asarray(sorted(real_ids), np.int64)
    mine = H.Rekeyer(key.read_bytes(), ids).ids("real", ids)
    assert (H.Rekeyer(key.read_bytes(), ids).ids("real", ids) == mine).all()
    assert set(df.subscriber_id[prov == "real"]) <= set(mine.tolist())
    assert set(H.Rekeyer(b"another secret key 123", ids).ids("real", ids).tolist()).isdisjoint(mine.tolist())
    taken = H.Rekeyer(key.read_bytes(), np.r_[ids, mine[:5]]).ids("real", ids)  # their first draws are taken
    assert not set(taken[:5].tolist()) & set(mine[:5].tolist()) and len(set(taken.tolist())) == len(ids)


def test_schema_manifest_and_fill(sources, built):
    real, syn, _, work = sources
    b, df = built
    c = read_cdr(work / "h")  # a valid CDR set in telcosim's schema
    assert len(c.subscriber_id) == len(df)
    schema = pq.read_schema(next((work / "h" / "cdr").glob("*.parquet")))
    src = pq.read_schema(next((real / "cdr").rglob("*.parquet")))
    assert schema.names == [n for n in src.names] + ["provenance"]
    m = json.loads((work / "h" / "manifest.json").read_text())
    prov = df.provenance.astype(str)
    assert m["rows"]["real"] == (prov == "real").sum() and m["rows"]["synthetic"] == (prov == "synthetic").sum()
    assert m["k"] == 5 and m["policy"]["dp"]["epsilon"] == 1.0 and m["privacy"]["delta"] == 0.0
    spent = m["privacy"]["ledger"]["spent"]["epsilon"]
    assert 0 < spent <= 1.0 + 1e-9
    assert len(m["privacy"]["dp_release"]["records_per_margin_cell"]) == 3 * 24
    assert m["sources"]["synthetic"]["path"] == str(syn) and m["sources"]["real"]["path"] == str(real)
    assert "from a key file" in m["privacy"]["key"]
    secret = sources[2].read_bytes()
    for f in (work / "h").rglob("*"):
        if f.is_file():  # the secret is written nowhere in the output, raw or as hex
            data = f.read_bytes()
            assert secret not in data and secret.hex().encode() not in data
    # the fill lands only in strata without real records, and in most of them
    cols = ("service", "hour", "cell")
    s = _strata(df, cols)
    keys = s.service.astype(str) + "|" + s.hour.astype(str) + "|" + s.cell.astype(str)
    fill = (prov == "synthetic") & df.incident_id.isna()
    assert fill.sum() == m["rows"]["synthetic_fill"] > 0
    assert not set(keys[fill]) & set(keys[prov == "real"])
    # the synthetic run is a quarter of the real one's size: it runs short in some strata, and says so
    assert m["rows"]["synthetic_fill"] + m["strata"]["fill_records_short"] == m["strata"]["fill_records_wanted"]
    assert m["strata"]["filled"] > 0 and m["fill"]["mode"] == "subset"


def test_incidents_come_along_with_their_labels(sources, built, parts):
    real, syn, key, work = sources
    b, df = built
    src = pq.read_table(syn / "cdr", columns=["incident_id"], partitioning=None).column("incident_id")
    labelled = src.drop_null()
    assert len(labelled) > 0
    assert df.incident_id.notna().sum() == len(labelled) == b.manifest["incidents"]["records"]
    assert (df.provenance.astype(str)[df.incident_id.notna()] == "synthetic").all()
    assert pq.read_table(work / "h" / "incidents.parquet").num_rows == 1
    _, few, tz, synth, layout, key = parts
    t = H.build(few, tz, synth, H.Policy(incidents=False), key, real_layout=layout).table
    assert t.column("incident_id").null_count == t.num_rows
    # counterparts = "drop": the real records' contact graph goes, the synthetic ones keep theirs
    t2 = H.build(few, tz, synth, H.Policy(incidents=False), key, real_layout=layout).table
    assert t2.equals(t)  # same inputs, key and seed: the same records (the manifest's DP release aside)
    d = H.build(few, tz, synth, H.Policy(counterparts="drop"), key, real_layout=layout).table.to_pandas()
    real_rows = d.provenance.astype(str) == "real"
    assert d.counterpart_id[real_rows].isna().all() and d.counterpart_id[~real_rows].notna().any()


def test_dp_fill_spends_the_budget(parts):
    _, df, tz, synth, layout, key = parts
    b = H.build(df, tz, synth, H.Policy(fill="dp", epsilon=0.5, delta=1e-6), key, real_layout=layout)
    led = b.manifest["privacy"]["ledger"]
    assert led["releases"][0]["mechanism"] == "gaussian"
    assert led["spent"]["epsilon"] == pytest.approx(0.5, rel=1e-6) and led["spent"]["delta"] <= 1e-6
    assert b.manifest["fill"]["mode"] == "dp" and b.manifest["rows"]["synthetic_fill"] > 0


def _bad(capsys, args, out: Path):
    code = main(["hybrid", *args, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert not out.exists() and not any(out.parent.glob(f".{out.name}.partial"))
    return err[0]


def test_bad_input_is_refused_with_nothing_written(sources, tmp_path, capsys):
    real, syn, key, _ = sources
    t = pq.read_table(real / "cdr", partitioning=None)
    pq.write_table(t.drop_columns(["cell_id"]), tmp_path / "nocell.parquet")
    st = t.schema.get_field_index("start_time")
    pq.write_table(t.set_column(st, "start_time", t.column("start_time").cast(pa.string())), tmp_path / "str.parquet")
    out = tmp_path / "out"
    base = ["--synthetic", str(syn), "--key-file", str(key)]
    msg = _bad(capsys, ["--real", str(tmp_path / "nocell.parquet"), *base], out)
    assert "nocell.parquet" in msg and "missing column(s) cell_id" in msg
    msg = _bad(capsys, ["--real", str(tmp_path / "str.parquet"), *base], out)
    assert "str.parquet" in msg and "'start_time'" in msg and "expected timestamp" in msg
    assert "--k: 1 is out of range (must be >= 2)" in _bad(capsys, ["--real", str(real), *base, "--k", "1"], out)
    msg = _bad(capsys, ["--real", str(real), *base, "--strata", "service,hours"], out)
    assert "--strata" in msg and "'hours'" in msg and "did you mean 'hour'" in msg
    (tmp_path / "p.toml").write_text('k = 5\n[dp]\nepsilom = 0.5\n')
    msg = _bad(capsys, ["--real", str(real), *base, "--policy", str(tmp_path / "p.toml")], out)
    assert msg.startswith("telcosim: error: p.toml: dp.epsilom: unknown key (did you mean 'dp.epsilon'?")
    (tmp_path / "q.toml").write_text('k = 1.5\n')
    assert "q.toml: k: 1.5 is not an integer" in _bad(capsys, ["--real", str(real), *base, "--policy",
                                                               str(tmp_path / "q.toml")], out)
    (tmp_path / "short.key").write_bytes(b"short")
    assert "at least 16" in _bad(capsys, ["--real", str(real), "--synthetic", str(syn), "--key-file",
                                          str(tmp_path / "short.key")], out)
    # an error after the staging folder was made (the synthetic source is no run) leaves nothing
    assert "not a telcosim run folder" in _bad(capsys, ["--real", str(real), "--synthetic", str(tmp_path),
                                                        "--key-file", str(key)], out)


@pytest.mark.slow
def test_report_puts_hybrid_and_synthetic_side_by_side(sources, tmp_path, capsys):
    real, syn, key, _ = sources
    out, rep = tmp_path / "h", tmp_path / "rep"
    assert main(["hybrid", "--real", str(real), "--synthetic", str(syn), "--out", str(out), "--key-file", str(key),
                 "--report", str(rep), "--attacks", "300"]) == 0
    assert "membership inference AUC" in capsys.readouterr().out
    c = json.loads((rep / "comparison.json").read_text())
    assert {"hybrid", "synthetic"} == set(c["summary"]) == set(c["privacy"])
    for name in ("hybrid", "synthetic"):
        doc = json.loads((rep / name / "metrics.json").read_text())
        assert doc["privacy"]["mia"]["members"] > 0 and (rep / name / "report.html").is_file()
    assert c["metrics"]["call_duration_distribution"]["hybrid"]["distance"] is not None
    # the real part of a hybrid is real records: membership shows, the synthetic run alone does not
    assert c["privacy"]["hybrid"]["mia_auc"] > c["privacy"]["synthetic"]["mia_auc"] + 0.05
    assert not (out / "comparison.json").exists()  # figures of the full real set stay out of the hybrid


def test_docs_list_every_policy_key():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "hybrid.md").read_text(encoding="utf-8")
    missing = [k for k in H.KEYS if f"`{k}`" not in doc]
    assert not missing, f"docs/hybrid.md does not describe {missing}"
    defaults = H.Policy().to_toml_dict()
    assert f'k = {defaults["k"]}' in doc and f'fill = "{defaults["fill"]}"' in doc


def test_a_scenario_is_run_on_the_real_window(sources, tmp_path):
    real, _, key, _ = sources
    sc = small_scenario(**{"population.subscribers": 800, "seed": 3, "time.start": "2023-01-10T00:00:00"})
    m = telcosim.hybrid(real, tmp_path / "h", scenario=sc, key_file=key)
    assert m["sources"]["synthetic"]["kind"] == "scenario run" and m["rows"]["synthetic_fill"] > 0
    assert m["sources"]["synthetic"]["start"] == "2024-03-05T00:00:00"  # moved to the real records' first day
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == ["cdr", "cells.parquet", "manifest.json"]
    t = pq.read_table(tmp_path / "h" / "cdr", columns=["start_time", "provenance"], partitioning=None).to_pandas()
    days = t.start_time.dt.tz_convert("Europe/Rome").dt.date.astype(str)
    assert set(days) == {"2024-03-05"}
