"""Cell lists as they come: OpenCellID's published layout read by network.layout = "csv" as it is,
told apart from the cell_id, lat, lon layout by the header; the user's choices (radio types,
samples, duplicates, the area, how sites are formed) as network.cells_* keys, each refused where it
has no effect; every bad line reported with its line, column and value.

The fixture, scenarios/builtin/opencellid_town_madeup.csv, is made up (test network code 001-01):
six LTE eNodeBs of three sectors each, whose positions lie 0.15-0.35 km from their mast as
OpenCellID's averaged positions do; an LTE cell known by its sector number only; three GSM masts
of three cells at one point each; four UMTS cells and one NR cell on their own."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy.spatial import cKDTree

from telcosim import scenarios
from telcosim.scenarios.loader import BUILTIN_DIR
from telcosim.scenarios.runner import run
from telcosim.sim import config
from telcosim.sim.config import NetworkConfig
from telcosim.sim.errors import ConfigError, InputDataError
from telcosim.sim.network import OPENCELLID_COLUMNS, _latlon, _xy, load_cells_csv
from tests.conftest import SHARED_DATA

FIXTURE = BUILTIN_DIR / "opencellid_town_madeup.csv"
HEADER = ",".join(OPENCELLID_COLUMNS)


def _cfg(path: Path = FIXTURE, **keys) -> NetworkConfig:
    return dataclasses.replace(NetworkConfig(layout="csv", cells_csv=str(path)), **keys)


def _rows() -> list[dict[str, str]]:
    lines = FIXTURE.read_text().splitlines()
    return [dict(zip(OPENCELLID_COLUMNS, line.split(","), strict=True)) for line in lines[1:]]


def _problems(path: Path, **keys) -> list[str]:
    with pytest.raises(InputDataError) as err:
        load_cells_csv(path, _cfg(path, **keys))
    return err.value.problems


def _write(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    p = tmp_path / "cells.csv"
    p.write_text("\n".join([header, *rows]) + "\n")
    return p


def _row(radio="LTE", cell=20505601, lon=9.19, lat=45.46, samples=5, area=1001) -> str:
    return f"{radio},1,1,{area},{cell},0,{lon},{lat},800,{samples},1,1546300800,1704067200,0"


def test_the_fixture_runs_with_the_csv_layout_unchanged_and_colocated_cells_are_one_site(tmp_path):
    """The must-show: only layout = 'csv' and cells_csv, and the sectors of a site share it."""
    sc_file = tmp_path / "town.toml"
    sc_file.write_text(f"[network]\nlayout = 'csv'\ncells_csv = '{FIXTURE}'\n[population]\nsubscribers = 300\n")
    out = tmp_path / "out"
    result = run(scenarios.load(sc_file), out)
    assert result.rows["cdr"] > 0
    cells = pq.read_table(out / "cells.parquet").to_pandas()
    rows = _rows()
    assert len(cells) == len(rows) == 33
    assert cells.source_id.tolist() == [f"{r['radio']}-1-1-{r['area']}-{r['cell']}" for r in rows]
    by_source = dict(zip(cells.source_id, cells.site_id, strict=True))
    site_of = [by_source[f"{r['radio']}-1-1-{r['area']}-{r['cell']}"] for r in rows]
    # LTE: the three sectors of each eNodeB (cell // 256) are one site, and only they.
    lte = [(int(r["cell"]) // 256, s) for r, s in zip(rows, site_of, strict=True) if r["radio"] == "LTE" and int(r["cell"]) >= 256]
    assert len({e for e, _ in lte}) == len({s for _, s in lte}) == 6
    assert all(len({s for e2, s in lte if e2 == e}) == 1 for e, _ in lte)
    # GSM: the cells at one point are one site; UMTS, NR and the LTE cell without eNodeB each alone.
    gsm = [(r["lat"], r["lon"], s) for r, s in zip(rows, site_of, strict=True) if r["radio"] == "GSM"]
    assert len({(a, b) for a, b, _ in gsm}) == len({s for *_, s in gsm}) == 3
    alone = [s for r, s in zip(rows, site_of, strict=True) if r["radio"] in ("UMTS", "NR") or int(r["cell"]) < 256]
    assert len(alone) == 6 and all(site_of.count(s) == 1 for s in alone)
    assert cells.site_id.nunique() == 6 + 3 + 6
    # Cells of one site share its position (cells.lat, cells.lon).
    assert (cells.groupby("site_id")[["lat", "lon"]].nunique() == 1).all().all()


def test_sites_sit_at_their_cells_mean_and_each_cell_keeps_its_position_as_coverage_centroid():
    net = load_cells_csv(FIXTURE, _cfg())
    rows = _rows()
    lat = np.array([float(r["lat"]) for r in rows])
    lon = np.array([float(r["lon"]) for r in rows])
    assert net.origin == pytest.approx((lat.mean(), lon.mean()))
    x, y = _xy(lat, lon, net.origin)
    np.testing.assert_allclose(net.cx_km, x, atol=1e-12)
    np.testing.assert_allclose(net.cy_km, y, atol=1e-12)
    for s in np.unique(net.site_id):
        m = net.site_id == s
        np.testing.assert_allclose(net.x_km[m], x[m].mean(), atol=1e-12)
        np.testing.assert_allclose(net.y_km[m], y[m].mean(), atol=1e-12)
    # The LTE sectors' positions lie 0.15-0.35 km from their mast: so do the centroids from the site.
    lte = np.array([r["radio"] == "LTE" and int(r["cell"]) >= 256 for r in rows])
    off = np.hypot(net.cx_km - net.x_km, net.cy_km - net.y_km)[lte]
    assert 0.1 < off.min() and off.max() < 0.4
    assert np.isnan(net.azimuth_deg).all()  # the file has no azimuth, and none is made up
    lat_back, lon_back = _latlon(net.x_km, net.y_km, net.origin)
    np.testing.assert_allclose(net.lat, lat_back)


def test_radio_samples_and_area_select_the_rows():
    rows = _rows()
    net = load_cells_csv(FIXTURE, _cfg(cells_radio="gsm, LTE"))
    assert net.n_cells == sum(r["radio"] in ("GSM", "LTE") for r in rows) == 28
    net = load_cells_csv(FIXTURE, _cfg(cells_min_samples=5))
    assert net.n_cells == sum(int(r["samples"]) >= 5 for r in rows)
    # Within 1 km of a centre: the centre is the origin given, not the cells' mean.
    net = load_cells_csv(FIXTURE, _cfg(cells_within_km=1.0, origin_lat=45.4642, origin_lon=9.19))
    assert net.origin == (45.4642, 9.19)
    lat = np.array([float(r["lat"]) for r in rows])
    lon = np.array([float(r["lon"]) for r in rows])
    x, y = _xy(lat, lon, (45.4642, 9.19))
    assert net.n_cells == int((np.hypot(x, y) <= 1.0).sum()) == 8
    (line,) = _problems(FIXTURE, cells_radio="CDMA", cells_within_km=0.5)
    assert line == ("opencellid_town_madeup.csv: no cells left of 33 rows (33 not of radio CDMA; then 0 farther than "
                    "0.5 km from (45.4642, 9.19)): widen the network.cells_* selection")
    (line,) = _problems(FIXTURE, cells_radio="NR", cells_min_samples=5)
    assert "(32 not of radio NR; then 1 with fewer than 5 samples)" in line


def test_the_area_selects_in_the_cell_id_layout_too(tmp_path):
    p = _write(tmp_path, "A,45.4642,9.19", "B,45.47,9.19", "C,45.60,9.19", header="cell_id,lat,lon")
    net = load_cells_csv(p, _cfg(p, cells_within_km=2.0))
    assert net.source_id == ["A", "B"] and net.origin == (45.4642, 9.19)


def test_duplicates_are_an_error_unless_the_user_says_which_row_to_keep(tmp_path):
    p = _write(tmp_path, _row(cell=20505601, samples=3), _row(cell=20505602), _row(cell=20505601, samples=9, lat=45.47),
               _row(cell=20505601, samples=9, lat=45.48))
    assert _problems(p) == [
        "cells.csv: line 4: cell LTE-1-1-1001-20505601 duplicates line 2 (set network.cells_duplicates = 'first' or "
        "'most_samples' to keep one row)",
        "cells.csv: line 5: cell LTE-1-1-1001-20505601 duplicates line 2 (set network.cells_duplicates = 'first' or "
        "'most_samples' to keep one row)"]
    first = load_cells_csv(p, _cfg(p, cells_duplicates="first"))
    most = load_cells_csv(p, _cfg(p, cells_duplicates="most_samples"))
    assert first.source_id == most.source_id == ["LTE-1-1-1001-20505601", "LTE-1-1-1001-20505602"]
    # The first row's position (45.46) against the first of the two with 9 samples (45.47).
    assert first.cy_km[0] - first.cy_km[1] == pytest.approx(0.0)
    assert most.cy_km[0] - most.cy_km[1] == pytest.approx(0.01 * 110.574)
    # A cell of another radio type with the same numbers is another cell.
    p = _write(tmp_path, _row(cell=20505601), _row(radio="UMTS", cell=20505601))
    assert load_cells_csv(p, _cfg(p)).n_cells == 2


def test_grouping_by_position_takes_the_cells_near_each_sites_first_cell(tmp_path):
    # Along a line, 0.3 km apart: with 0.35 km, cell 0 takes 1, cell 2 takes 3 (3 is 0.6 km from 0,
    # so a chain is not followed), cell 4 is alone.
    rows = [_row(radio="UMTS", cell=100 + i, lat=45.46 + 0.3 * i / 110.574) for i in range(5)]
    p = _write(tmp_path, *rows)
    assert load_cells_csv(p, _cfg(p)).site_id.tolist() == [0, 1, 2, 3, 4]
    assert load_cells_csv(p, _cfg(p, cells_colocated_m=350.0)).site_id.tolist() == [0, 0, 1, 1, 2]
    # cells_sites = 'position' groups LTE cells by position too. The fixture's sectors lie up to
    # 0.6 km apart around masts 1.3 km or more apart: 600 m finds the eNodeBs (and puts the GSM and
    # UMTS cells near an LTE mast on its site); 400 m splits some of them.
    by_enb = load_cells_csv(FIXTURE, _cfg())
    lte = np.arange(18)
    by_pos = load_cells_csv(FIXTURE, _cfg(cells_sites="position", cells_colocated_m=600.0))
    assert by_pos.site_id[lte].tolist() == by_enb.site_id[lte].tolist()
    assert by_pos.site_id.max() + 1 == 12 < by_enb.site_id.max() + 1 == 15
    by_pos = load_cells_csv(FIXTURE, _cfg(cells_sites="position", cells_colocated_m=400.0))
    assert by_pos.site_id[lte].tolist() != by_enb.site_id[lte].tolist()
    # A site_id column, when given, wins over both.
    p = _write(tmp_path, _row(cell=20505601) + ",S1", _row(cell=20505857) + ",S1", _row(cell=20505602) + ",",
               header=HEADER + ",site_id")
    assert load_cells_csv(p, _cfg(p)).site_id.tolist() == [0, 0, 1]


def test_bad_lines_are_reported_with_line_column_and_value(tmp_path):
    p = _write(tmp_path, _row(radio="WIFI"), _row(lat=95), "LTE,1,x,1001,-5,0,9.19,45.46,800,many,1,0,0,0",
               _row(samples=""), _row(area="²"))
    assert _problems(p) == [
        "cells.csv: line 2: radio: 'WIFI' is not one of GSM, UMTS, CDMA, LTE, NR",
        "cells.csv: line 3: lat: 95.0 is out of range (-90..90)",
        "cells.csv: line 4: net: 'x' is not a whole number >= 0",
        "cells.csv: line 4: cell: '-5' is not a whole number >= 0",
        "cells.csv: line 4: samples: 'many' is not a whole number >= 0",
        "cells.csv: line 5: samples: '' is not a whole number >= 0",
        "cells.csv: line 6: area: '²' is not a whole number >= 0",
    ]


def test_a_list_without_its_header_or_a_needed_column_is_refused(tmp_path):
    p = tmp_path / "cells.csv"
    p.write_text(_row() + "\n" + _row(cell=20505602) + "\n")
    assert _problems(p) == [f"cells.csv: the first line is a cell in OpenCellID's layout, not a header: add the line "
                            f"{HEADER} at the top"]
    p = _write(tmp_path, "LTE,1,1,1001,20505601,9.19,45.46", header="radio,mcc,net,area,cell,lon,lat")
    assert load_cells_csv(p, _cfg(p)).n_cells == 1
    (line,) = _problems(p, cells_min_samples=2)
    assert line.startswith("cells.csv: network.cells_min_samples: 2 needs the samples column, which cells.csv lacks")
    p = _write(tmp_path, "LTE,1,1,1001,9.19,45.46", header="radio,mcc,net,area,lon,lat")
    (line,) = _problems(p)
    assert line.startswith("cells.csv: missing column(s) cell_id (required: cell_id, lat, lon;")
    assert "or OpenCellID's layout: radio, mcc, net, area, cell, unit, lon, lat" in line


@pytest.mark.parametrize("key,value", [("cells_radio", "LTE"), ("cells_min_samples", 3), ("cells_duplicates", "first"),
                                       ("cells_sites", "position"), ("cells_colocated_m", 50.0)])
def test_an_opencellid_choice_given_for_the_cell_id_layout_is_an_error(tmp_path, key, value):
    p = _write(tmp_path, "A,45.46,9.19", header="cell_id,lat,lon")
    assert _problems(p, **{key: value}) == [
        f"cells.csv: network.{key}: has no effect: cells.csv has the layout cell_id, lat, lon (it applies to "
        f"OpenCellID's layout only); remove network.{key}"]


def test_scenario_keys_are_checked_where_they_are_given():
    with pytest.raises(ConfigError) as err:
        config.load(None, ["network.layout='csv'", "network.cells_csv='c.csv'", "network.cells_radio='LTE,WIFI'",
                           "network.origin_lat=41.9", "network.cells_duplicates='last'"])
    assert err.value.problems == [
        "<default>: network.cells_duplicates: 'last' is not allowed (choose one of 'error', 'first', 'most_samples')",
        "<default>: network.cells_radio: 'LTE,WIFI' is not a comma-separated list of radio types (choose among GSM, "
        "UMTS, CDMA, LTE, NR; '' for every type)",
        "<default>: network.origin_lat: has no effect with network.layout = 'csv' unless network.cells_within_km is "
        "set (the centre is then the cells' mean position): remove it, or set network.cells_within_km to keep the "
        "cells around it"]
    sc = config.load(None, ["network.layout='csv'", "network.cells_csv='c.csv'", "network.cells_within_km=3",
                            "network.origin_lat=41.9"])
    assert sc.network.origin_lat == 41.9
    with pytest.raises(ConfigError, match=r"network.cells_min_samples: has no effect with network.layout = 'hex'"):
        config.load(None, ["network.layout='hex'", "network.cells_min_samples=2"])


def test_the_builtin_example_is_sound():
    assert scenarios.check("opencellid_town") == []
    sc = scenarios.load("opencellid_town")
    net = load_cells_csv(Path(sc.source).parent / sc.network.cells_csv, sc.network)
    assert net.n_cells == sum(r["radio"] != "NR" and int(r["samples"]) >= 3 for r in _rows())


@pytest.mark.slow
def test_averaged_positions_do_not_tell_sectors_from_neighbouring_sites():
    """The figures behind cells_colocated_m = 0 (docs/scenario-format.md): in the Irish 5G drive
    traces, a cell's mean fix position (as OpenCellID averages its measurements) lies farther from
    its own eNodeB's other sectors than from the nearest cell of another eNodeB."""
    files = sorted((SHARED_DATA / "irish_5g").rglob("*.csv"))
    if not files:
        pytest.skip("the Irish 5G traces are not in the shared data")
    cols = ["Longitude", "Latitude", "RAWCELLID", "NetworkMode"]
    d = pd.concat([pd.read_csv(f, usecols=cols, na_values="-") for f in files]).dropna()
    d = d[d.NetworkMode == "LTE"]
    g = d.groupby(d.RAWCELLID.astype(np.int64)).agg(lat=("Latitude", "mean"), lon=("Longitude", "mean"),
                                                     n=("Latitude", "size"))
    g = g[g.n >= 10]
    enb = g.index.to_numpy() // 256
    x, y = _xy(g.lat.to_numpy(), g.lon.to_numpy(), (float(g.lat.mean()), float(g.lon.mean())))
    pts = np.column_stack([x, y]) * 1000.0
    same = [np.hypot(*(pts[i] - pts[j])) for i in range(len(pts)) for j in range(i + 1, len(pts)) if enb[i] == enb[j]]
    dist, idx = cKDTree(pts).query(pts, k=len(pts))
    other = [next(dist[k, m] for m in range(1, len(pts)) if enb[idx[k, m]] != enb[k]) for k in range(len(pts))]
    assert len(g) == 58 and len(same) == 27
    assert np.median(same) == pytest.approx(613, abs=1) and np.percentile(same, 10) == pytest.approx(207, abs=1)
    assert np.median(other) == pytest.approx(273, abs=1)
    assert np.mean(np.array(same) <= 300) == pytest.approx(0.19, abs=0.005)
    assert np.mean(np.array(other) <= 300) == pytest.approx(0.55, abs=0.005)
