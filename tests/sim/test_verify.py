"""``telcosim verify``: a fresh run verifies clean, and each planted corruption is caught."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from telcosim import cli
from telcosim.scenarios.runner import run
from telcosim.sim.sinks import sha256_file
from telcosim.sim.verify import verify_run
from tests.conftest import small_scenario


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "run"
    run(small_scenario(**{"population.subscribers": 600}), out)
    return out


@pytest.fixture
def copy(clean_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(clean_run, dst)
    return dst


def _rewrite(run_dir, rel, column, change, fix_manifest):
    """Rewrite one Parquet file with ``column`` replaced by ``change(numpy values)``, keeping its
    schema and key-value metadata; optionally record the new size and checksum in the manifest."""
    path = run_dir / rel
    table = pq.read_table(path)
    i = table.schema.get_field_index(column)
    field = table.schema.field(i)
    values = table.column(i)
    if pa.types.is_timestamp(field.type):
        values = values.cast(pa.int64())
    new = change(values.to_numpy().copy())
    table = table.set_column(i, field, pa.array(new).cast(field.type))
    pq.write_table(table, path, compression="zstd")
    if fix_manifest:
        man_path = run_dir / "manifest.json"
        man = json.loads(man_path.read_text())
        man["files"][rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        man_path.write_text(json.dumps(man, indent=2, sort_keys=True) + "\n")


def _bump(index, delta):
    def change(a):
        a[index] += delta
        return a
    return change


def _has(problems, *words):
    return any(all(w in line for w in words) for line in problems)


def test_clean_run_verifies(clean_run, capsys):
    assert verify_run(clean_run) == []
    assert cli.main(["verify", str(clean_run)]) == 0
    assert "ok" in capsys.readouterr().out


def test_flipped_byte(copy, capsys):
    path = next((copy / "cdr").rglob("part-00003.parquet"))
    rel = path.relative_to(copy).as_posix()
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = verify_run(copy)
    assert _has(problems, rel, "SHA-256")
    assert cli.main(["verify", str(copy)]) == 1
    err = capsys.readouterr().err
    assert rel in err and "problem(s)" in err


def test_missing_file(copy):
    path = next((copy / "locations").rglob("part-00005.parquet"))
    path.unlink()
    problems = verify_run(copy)
    assert _has(problems, path.relative_to(copy).as_posix(), "missing")
    assert _has(problems, "locations:", "rows, manifest.json row_counts")


def test_missing_table(copy):
    (copy / "cells.parquet").unlink()
    problems = verify_run(copy)
    assert _has(problems, "cells.parquet: table missing")


def test_extra_unlisted_file(copy):
    pq.write_table(pa.table({"x": [1, 2]}), copy / "cdr" / "stray.parquet")
    problems = verify_run(copy)
    assert _has(problems, "cdr/stray.parquet", "not listed")


def _cdr_row(run_dir, service):
    """A (part, row) of the CDR with the given service."""
    for path in sorted((run_dir / "cdr").rglob("*.parquet"), key=lambda p: p.name):
        t = pq.read_table(path, columns=["service"])
        rows = np.flatnonzero(pc.equal(t.column("service"), service).to_numpy(zero_copy_only=False))
        if len(rows):
            return path.relative_to(run_dir).as_posix(), int(rows[0])
    raise AssertionError(f"no {service} row")


@pytest.mark.parametrize("fix_manifest", [False, True])
def test_dangling_cell_id(copy, fix_manifest):
    rel, row = _cdr_row(copy, "voice")

    def change(a):
        a[row] = 99999
        return a

    _rewrite(copy, rel, "cell_id", change, fix_manifest)
    problems = verify_run(copy)
    assert _has(problems, rel, "SHA-256") == (not fix_manifest)
    assert _has(problems, "cdr:", "cell_id not in cells.parquet", "99999", f"{rel} row {row}")
    # The leg also moved out of its cell: the CDR no longer agrees with the KPIs.
    assert _has(problems, "cell 99999", "voice legs")


def test_row_outside_window(copy):
    rel = next((copy / "locations").rglob("part-00010.parquet")).relative_to(copy).as_posix()
    _rewrite(copy, rel, "time", _bump(7, 86_400_000), fix_manifest=True)
    problems = verify_run(copy)
    assert not _has(problems, "SHA-256")
    assert _has(problems, f"{rel} row 7", "time", "outside the window")


def test_broken_conservation(copy):
    k = pq.read_table(copy / "cell_kpis.parquet", columns=["voice_attempts"]).column(0).to_numpy()
    row = int(np.flatnonzero(k > 0)[0])
    _rewrite(copy, "cell_kpis.parquet", "voice_blocked", _bump(row, 1), fix_manifest=True)
    problems = verify_run(copy)
    assert not _has(problems, "SHA-256")
    assert _has(problems, f"cell_kpis.parquet row {row}", "voice_attempts", "!=")
    assert _has(problems, "blocked voice legs", "voice_blocked")


def test_duplicate_record_id(copy):
    rel, row = _cdr_row(copy, "data")

    def change(a):
        a[row + 1] = a[row]
        return a

    _rewrite(copy, rel, "record_id", change, fix_manifest=True)
    problems = verify_run(copy)
    assert _has(problems, "repeat a record_id")


def test_seed_metadata_mismatch(copy):
    man_path = copy / "manifest.json"
    man = json.loads(man_path.read_text())
    man["seed"] += 1
    man_path.write_text(json.dumps(man))
    problems = verify_run(copy)
    assert _has(problems, "telcosim.seed", "manifest.json has")
    # One line per kind up to a cap, then a count.
    assert sum("telcosim.seed" in line for line in problems) <= 6


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_garbled_manifest(copy, text):
    (copy / "manifest.json").write_text(text)
    problems = verify_run(copy)
    assert problems and all(line.startswith("manifest.json") for line in problems)
    assert cli.main(["verify", str(copy)]) == 1


def test_manifest_missing_parts(copy):
    man_path = copy / "manifest.json"
    man = json.loads(man_path.read_text())
    del man["window"], man["files"]
    man_path.write_text(json.dumps(man))
    problems = verify_run(copy)
    assert _has(problems, "manifest.json", "'window'")
    assert _has(problems, "not listed in manifest.json")


def test_missing_folder(tmp_path):
    assert verify_run(tmp_path / "nope") == [f"{tmp_path / 'nope'}: not a folder"]
    assert _has(verify_run(tmp_path), "manifest.json: missing")
