"""The scenario loader: built-ins, extends chains and their merge, overrides over inheritance,
problems reported against the file that wrote them, paths relative to the file that wrote them."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcosim import scenarios
from telcosim.scenarios import loader
from telcosim.sim import config
from telcosim.sim.config import Scenario
from telcosim.sim.errors import ConfigError

BUILTINS = ("normal_weekday", "small_city", "weekend")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _problems(ref, overrides=None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        scenarios.load(ref, overrides)
    return err.value.problems


def _same(a: Scenario, b: Scenario) -> bool:  # NaN-aware (unset call durations are NaN)
    return json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)


# -- built-ins ----------------------------------------------------------------------------------

def test_builtins_are_listed_and_described():
    assert set(BUILTINS) <= set(scenarios.builtin_names())
    for name, description in scenarios.describe_builtins():
        sc = scenarios.load(name)
        assert sc.name == name and description and "\n" not in description
        assert Path(sc.source) == loader.builtin_path(name).resolve()


def test_builtin_calendars_and_sizes():
    weekday, weekend, small = (scenarios.load(n) for n in ("normal_weekday", "weekend", "small_city"))
    assert weekday.time.start_datetime().strftime("%A") == "Tuesday" and weekday.time.days == 1
    assert weekend.time.start_datetime().strftime("%A") == "Saturday" and weekend.time.days == 2
    # weekend extends normal_weekday: the same city and people.
    assert weekend.network == weekday.network and weekend.population == weekday.population
    assert 1000 <= small.population.subscribers <= 10_000 and small.network.sites < weekday.network.sites


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_runs_at_small_size(name):
    from telcosim.scenarios.runner import run

    sc = scenarios.load(name, ["population.subscribers=300", "time.days=1"])
    result = run(sc, None)
    assert result.rows["cdr"] > 0 and result.rows["locations"] > 0
    assert result.rows["cell_kpis"] > 0


@pytest.mark.parametrize("name", scenarios.builtin_names())
def test_dumps_round_trips_every_key(name):
    sc = scenarios.load(name)
    text = scenarios.dumps(sc)
    again = config.from_dict(tomllib.loads(text))
    assert _same(again, sc)
    # Every key of the schema appears, set or as a comment (NaN: unset; or a network key that
    # has no effect with the layout).
    idle = config.idle_network_keys(sc)
    for section, table in Scenario().to_dict().items():
        keys = table if isinstance(table, dict) else {section: table}
        for key in keys:
            assert (f"\n{key} = " in "\n" + text or f"# {key} = nan" in text or f"[[{key}]]" in text
                    or (key in idle and f"# {key} = " in text)), key


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
       st.floats(allow_nan=False, allow_infinity=False, min_value=0))
def test_dumps_round_trips_any_text_and_number(text, rate):
    sc = config.from_dict({"name": text, "description": text, "behaviour": {"voice_per_day": rate}})
    assert _same(config.from_dict(tomllib.loads(scenarios.dumps(sc))), sc)


# -- plain files and refs -----------------------------------------------------------------------

def test_plain_file_loads_as_before(tmp_path):
    f = _write(tmp_path / "city.toml", "name = 'c'\n[network]\nsites = 40\n[time]\ndays = 2\n")
    new, old = scenarios.load(f, ["seed=7"]), config.load(f, ["seed=7"])
    assert new == old and new.source == str(f.resolve())
    assert scenarios.load(None) == Scenario()
    assert _same(scenarios.load(None, ["network.sites=9"]), config.load(None, ["network.sites=9"]))


def test_unknown_ref():
    (line,) = _problems("weekdn")
    assert line.startswith("weekdn: no such scenario file or built-in scenario")
    assert "did you mean 'weekend'?" in line and all(n in line for n in BUILTINS)
    (line,) = _problems("missing/city.toml")
    assert line.startswith("missing/city.toml: no such scenario file")


# -- extends ------------------------------------------------------------------------------------

def test_extends_a_builtin_by_name(tmp_path):
    f = _write(tmp_path / "busy.toml", "extends = 'weekend'\nname = 'busy'\n[behaviour]\nvoice_per_day = 5.0\n")
    sc = scenarios.load(f)
    weekend = scenarios.load("weekend")
    assert sc.name == "busy" and sc.behaviour.voice_per_day == 5.0
    assert sc.time == weekend.time and sc.network == weekend.network  # inherited through two levels
    assert sc.description == weekend.description
    assert sc.source == str(f.resolve())


def test_extends_chain_of_paths_and_merge(tmp_path):
    _write(tmp_path / "common" / "base.toml", """
name = "base"
description = "the base"
[network]
sites = 30
voice_channels = { urban = 10, rural = 2 }
[population]
subscribers = 900
commuter_share = 0.5
""")
    _write(tmp_path / "common" / "mid.toml", """
extends = "base.toml"
name = "mid"
[network]
voice_channels = { urban = 12 }
radius_km = 5.0
""")
    leaf = _write(tmp_path / "cities" / "leaf.toml", """
extends = "../common/mid.toml"
name = "leaf"
[population]
subscribers = 1200
""")
    sc = scenarios.load(leaf)
    assert sc.name == "leaf" and sc.description == "the base"
    # Tables merge key by key at every depth; values are replaced by the nearer file.
    assert sc.network.sites == 30 and sc.network.radius_km == 5.0
    assert sc.network.voice_channels.as_tuple() == (12.0, 6.0, 2.0)  # 6: the default, set by nobody
    assert sc.population.subscribers == 1200 and sc.population.commuter_share == 0.5
    assert sc.source == str(leaf.resolve())


def test_merge_semantics_and_provenance():
    prov: dict = {}
    base = loader.merge({}, {"a": {"b": 1, "c": {"d": 2}}, "x": 1}, "p.toml", prov)
    loader.merge(base, {"a": {"c": {"e": 3}}, "x": {"y": 2}}, "c.toml", prov)
    assert base == {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "x": {"y": 2}}
    assert prov[("a", "b")] == "p.toml" and prov[("a", "c", "d")] == "p.toml"
    assert prov[("a", "c", "e")] == "c.toml" and prov[("x",)] == prov[("x", "y")] == "c.toml"
    # A value replacing a table replaces it whole, and forgets where its keys came from.
    loader.merge(base, {"a": 5}, "c.toml", prov)
    assert base["a"] == 5 and ("a", "b") not in prov and prov[("a",)] == "c.toml"


def test_overrides_apply_after_extends(tmp_path):
    _write(tmp_path / "base.toml", "[network]\nsites = 30\nvoice_channels = { urban = 10 }\n")
    f = _write(tmp_path / "child.toml", "extends = 'base.toml'\n[network]\nsites = 40\ndimensioning = 'fixed'\n")
    sc = scenarios.load(f, ["network.sites=50", "network.voice_channels.rural=1", "time.days=3"])
    assert sc.network.sites == 50 and sc.time.days == 3
    assert sc.network.voice_channels.as_tuple() == (10.0, 6.0, 1.0)
    # A bad override is reported against the loaded file, even for a key a parent set.
    (line,) = _problems(f, ["network.voice_channels.urban=-1"])
    assert line == "child.toml: network.voice_channels.urban: -1.0 is out of range (must be >= 0)"
    assert _problems(f, ["network.sites", "=1"]) == ["--set 'network.sites': expected dotted.key=value",
                                                      "--set '=1': empty key"]


def test_problem_in_parent_names_the_parent(tmp_path):
    _write(tmp_path / "base.toml", "seed = -1\n[network]\nsites = 0\nsitez = 3\n[time]\ndays = 400\n")
    f = _write(tmp_path / "child.toml", "extends = 'base.toml'\n[time]\ndays = 2\n[network]\nsectors = 9\n")
    problems = _problems(f)
    assert sorted(problems) == sorted([
        "base.toml: seed: -1 is out of range (must be >= 0) (inherited by child.toml)",
        "base.toml: network.sites: 0 is out of range (must be >= 1) (inherited by child.toml)",
        "base.toml: network.sitez: unknown key (did you mean 'sites'?) (inherited by child.toml)",
        "child.toml: network.sectors: 9 is out of range (must be <= 6)",
    ])  # time.days = 400 is replaced by the child's 2: not a problem of the child
    # The parent on its own says the same problems in its own name.
    assert len(_problems(tmp_path / "base.toml")) == 4


def test_problem_in_a_parent_in_another_folder(tmp_path):
    _write(tmp_path / "lib" / "base.toml", "[population]\nsubscribers = 'many'\n")
    f = _write(tmp_path / "run" / "child.toml", "extends = '../lib/base.toml'\n")
    assert _problems(f) == [f"{Path('../lib/base.toml')}: population.subscribers: 'many' is not an integer "
                            "(inherited by child.toml)"]


def test_cross_key_problem_blames_the_file_that_set_the_key(tmp_path):
    _write(tmp_path / "base.toml", "[network]\nurban_km = 7.0\n")
    f = _write(tmp_path / "child.toml", "extends = 'base.toml'\n[output]\nkpi_interval_s = 700\n")
    assert sorted(_problems(f)) == [
        "child.toml: network.suburban_km: 6.0 is smaller than network.urban_km (7.0)",  # set by nobody
        "child.toml: output.kpi_interval_s: 700 does not divide 3600 (use e.g. 300, 900, 1800 or 3600)",
    ]


def test_parent_not_valid_toml(tmp_path):
    _write(tmp_path / "base.toml", "[network\n")
    f = _write(tmp_path / "child.toml", "extends = 'base.toml'\n")
    (line,) = _problems(f)
    assert line.startswith("base.toml: not valid TOML:") and line.endswith("(in a scenario that child.toml extends)")


@pytest.mark.parametrize("value,needle", [
    ("3", "extends: 3 is not a string"),
    ("['weekend']", "extends: ['weekend'] is not a string"),
    ("{ name = 'weekend' }", "extends: {'name': 'weekend'} is not a string"),
    ("''", "extends: '' is empty"),
    ("'weekdn'", "extends: 'weekdn': no such built-in scenario or file (did you mean 'weekend'?"),
    ("'nowhere/base.toml'", "extends: 'nowhere/base.toml': no such scenario file"),
    ("'.'", "extends: '.': cannot read"),
])
def test_bad_extends(tmp_path, value, needle):
    f = _write(tmp_path / "child.toml", f"extends = {value}\n[network]\nsites = 0\n")
    problems = _problems(f)
    # A bad extends is reported on its own: the rest cannot be checked without the parent.
    assert len(problems) == 1
    assert problems[0].startswith("child.toml: extends: ") and needle in problems[0], problems
    if "not a string" in needle or "no such" in needle:
        assert all(n in problems[0] for n in BUILTINS)


@pytest.mark.parametrize("files,loop", [
    ({"a.toml": "a.toml"}, "a.toml -> a.toml"),
    ({"a.toml": "b.toml", "b.toml": "a.toml"}, "a.toml -> b.toml -> a.toml"),
    ({"a.toml": "b.toml", "b.toml": "sub/c.toml", "sub/c.toml": "../a.toml"}, "a.toml -> b.toml -> sub/c.toml -> a.toml"),
])
def test_extends_cycle(tmp_path, files, loop):
    for name, parent in files.items():
        _write(tmp_path / name, f"extends = '{parent}'\n")
    (line,) = _problems(tmp_path / "a.toml")
    assert "makes a cycle" in line and f"({loop})" in line, line
    assert "extends:" in line


def test_extends_is_top_level_only(tmp_path):
    f = _write(tmp_path / "child.toml", "[network]\nextends = 'weekend'\n")
    assert _problems(f) == ["child.toml: network.extends: unknown key (allowed: " +
                            ", ".join(k for k in Scenario().network.__dataclass_fields__) + ")"]


# -- relative paths ------------------------------------------------------------------------------

def test_relative_paths_resolve_against_the_file_that_wrote_them(tmp_path):
    from telcosim.sim.engine import Simulation

    cells = "cell_id,lat,lon\nA,45.0,9.0\nB,45.01,9.0\nC,45.0,9.01\n"
    _write(tmp_path / "lib" / "cells.csv", cells)
    _write(tmp_path / "lib" / "base.toml",
           "[network]\nlayout = 'csv'\ncells_csv = 'cells.csv'\n[population]\nsubscribers = 50\n")
    child = _write(tmp_path / "runs" / "child.toml", "extends = '../lib/base.toml'\nname = 'child'\n")
    sc = scenarios.load(child)
    assert sc.network.cells_csv == str((tmp_path / "lib" / "cells.csv").resolve())
    assert Simulation(sc).network.n_cells == 3
    assert scenarios.check(child) == []
    # The loaded file's own relative path stays relative to it (and so unchanged in the manifest).
    _write(tmp_path / "runs" / "mine.csv", cells + "D,45.02,9.02\n")
    own = _write(tmp_path / "runs" / "own.toml", "extends = '../lib/base.toml'\n[network]\ncells_csv = 'mine.csv'\n")
    sc = scenarios.load(own)
    assert sc.network.cells_csv == "mine.csv" and Simulation(sc).network.n_cells == 4
    # A profile path in a parent is made absolute too; 'default' is left alone.
    _write(tmp_path / "lib" / "p.toml", "[behaviour]\nprofile = 'my_profile.toml'\n")
    sc = scenarios.load(_write(tmp_path / "runs" / "p.toml", "extends = '../lib/p.toml'\n"))
    assert sc.behaviour.profile == str((tmp_path / "lib" / "my_profile.toml").resolve())
    assert scenarios.load("weekend").behaviour.profile == "default"


def test_check_reports_input_files(tmp_path):
    _write(tmp_path / "cells.csv", "cell_id,lat,lon\nA,45,9\nA,46,9\n")
    f = _write(tmp_path / "c.toml", "[network]\nlayout = 'csv'\ncells_csv = 'cells.csv'\n"
                                    "[behaviour]\nprofile = 'nope.toml'\n")
    problems = scenarios.check(f)
    assert any("cells.csv: line 3: cell_id 'A' duplicates line 2" in p for p in problems), problems
    assert any("nope.toml: no such profile file" in p for p in problems), problems


def test_time_start_inherited_is_a_saturday(tmp_path):
    f = _write(tmp_path / "w.toml", "extends = 'weekend'\n[time]\ndays = 1\n")
    assert scenarios.load(f).time.start_datetime().weekday() == dt.date(2024, 3, 9).weekday() == 5


def test_a_dump_leaves_out_the_keys_its_layout_ignores(tmp_path):
    # A CSV network that extends a hex built-in inherits sites = 19, which has no effect with a
    # cells CSV: the dump writes it as a comment, so it loads back as the user's own file.
    (tmp_path / "cells.csv").write_text("cell_id,lat,lon\n0,45.0,9.0\n1,45.01,9.0\n")
    f = tmp_path / "mine.toml"
    f.write_text('extends = "small_city"\n[network]\nlayout = "csv"\ncells_csv = "cells.csv"\n')
    sc = scenarios.load(str(f))
    text = scenarios.dumps(sc)
    assert "# sites = 19   # no effect with layout = 'csv'" in text
    again = tmp_path / "again.toml"
    again.write_text(text)
    reloaded = scenarios.load(str(again))
    assert reloaded.network.layout == "csv" and reloaded.network.sites == config.NetworkConfig().sites
