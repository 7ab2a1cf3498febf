"""The run writer: parts in row groups of ROW_GROUP_ROWS rows whatever the pieces they came in."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from telcosim.sim import sinks


def _piece(lo: int, n: int) -> pa.Table:
    return pa.table({"x": pa.array(range(lo, lo + n), pa.int64()), "y": pa.array([f"v{i % 3}" for i in range(lo, lo + n)])})


def test_parts_are_cut_into_full_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(sinks, "ROW_GROUP_ROWS", 10)
    w = sinks.RunWriter(tmp_path / "run", {"k": "v"})
    sizes = [3, 0, 9, 14, 1, 4]  # 31 rows in six pieces: groups of 10, 10, 10 and 1
    lo = 0
    for i, n in enumerate(sizes):
        w.write_part("t", _piece(lo, n), final=i == len(sizes) - 1)
        lo += n
    w.write_part("t", _piece(0, 0), final=True)  # an empty part is still written
    w.write_part("t", _piece(0, 7), final=False)
    w.write_part("t", _piece(7, 3), final=True)  # exactly one full group
    out = w.commit({})
    f0 = pq.ParquetFile(out / "t" / "part-00000.parquet")
    assert [f0.metadata.row_group(i).num_rows for i in range(f0.num_row_groups)] == [10, 10, 10, 1]
    assert f0.read().equals(_piece(0, 31).replace_schema_metadata(f0.schema_arrow.metadata))
    assert f0.schema_arrow.metadata[b"k"] == b"v"
    assert pq.read_table(out / "t" / "part-00001.parquet").num_rows == 0
    f2 = pq.ParquetFile(out / "t" / "part-00002.parquet")
    assert [f2.metadata.row_group(i).num_rows for i in range(f2.num_row_groups)] == [10]
    assert w.rows["t"] == 41
