"""The report page: self-contained (inline SVG, no script, no external resource), summary first,
every metric in the table with its status, plots with labelled axes and legends; metrics.json."""

from __future__ import annotations

import json
import re

import pytest

from telcosim.evaluation.report import fmt, render_html, write_report


def test_page_is_self_contained_and_summarises_first(honest_doc):
    page = render_html(honest_doc)
    low = page.lower()
    assert "<script" not in low and "<link" not in low and "<iframe" not in low and "<img" not in low
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", low)
    assert "url(http" not in low and "@import" not in low
    assert page.count("<svg") >= 4  # hourly, cell load, duration CDF, move probability, ratios
    # summary (cards, table, headline plots) before the details
    assert page.index("id='summary'") < page.index("id='summary-table'") < page.index("<h2>Details</h2>")
    assert page.index("Hourly profile: synthetic vs real") < page.index("<h2>Details</h2>")
    s = honest_doc["summary"]
    assert f"<b>{s['passed']} / {s['evaluated']}</b>" in page
    assert f"gate: {s['gate']}" in page


def test_every_metric_has_a_coloured_row(honest_doc):
    page = render_html(honest_doc)
    table = page[page.index("id='summary-table'"):page.index("</table>", page.index("id='summary-table'"))]
    for name, m in honest_doc["metrics"].items():
        row = table[table.index(f"<tr><td>{name}"):]
        row = row[:row.index("</tr>")]
        assert f'<td class="{m["status"]}">' in row, name
    counts = {st: table.count(f'<td class="{st}">') for st in ("pass", "fail", "not_evaluated")}
    assert counts["pass"] == honest_doc["summary"]["passed"] and counts["fail"] == honest_doc["summary"]["failed"]


def test_plots_have_axis_units_and_legends(honest_doc):
    page = render_html(honest_doc)
    for label in ("hour of day (local time, h)", "load / daily mean (1)", "cell-hour load / cell mean (x)",
                  "share of cell-hours &lt;= x", "call duration (s, log scale)", "synthetic (run)", "real (shares)",
                  "real (locations)"):
        assert label in page, label


def test_write_report_writes_json_and_html(honest_doc, tmp_path):
    out = tmp_path / "rep"
    metrics, page = write_report(honest_doc, out)
    doc = json.loads(metrics.read_text())
    assert doc["summary"] == honest_doc["summary"] and set(doc["metrics"]) == set(honest_doc["metrics"])
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "report.html"]


def test_cell_formatting():
    assert fmt(None) == "–" and fmt(float("nan")) == "–"
    assert fmt(50000) == "50,000" and fmt(0.123456) == "0.1235" and fmt(2.5e-5) == "2.5e-05"
    assert fmt([1.0] * 24) == "shape[24]" and fmt({"n": 9, "p50": 1.5}) == "p50 1.5"
    assert fmt("<b>") == "&lt;b&gt;"


def test_utility_and_privacy_sections_render(honest_doc):
    from telcosim.evaluation import report

    doc = dict(honest_doc)
    doc["utility"] = {"model": "ridge", "seed": 1, "sets": {"cells": {
        "path": "lte", "split": "time", "synthetic_load": "data_volume_mb per cell-hour", "synthetic_series": 9,
        "synthetic_hours": 336, "real_train_series": 3, "real_test_series": 3}},
        "tasks": {"next_hour.cells": {"task": "next_hour", "real": "cells", "lags_h": [1, 2, 3, 24, 168],
                                      "synthetic_trained": {"mae": 1.2, "smape": 0.6},
                                      "real_trained": {"mae": 1.0, "smape": 0.5},
                                      "seasonal_naive": {"mae": 1.3, "smape": 0.7}, "ratio_mae": 1.2,
                                      "limit": 1.25, "status": "pass", "note": ""},
                  "next_day.cells": {"task": "next_day", "real": "cells", "lags_h": [], "status": "not_evaluated",
                                     "note": "too short"}},
        "summary": {"tasks": 2, "evaluated": 1, "passed": 1, "failed": [], "rule": "ratio <= 1.25"},
        "outage_detector": {"status": "not_evaluated", "note": "give --utility-augment and --utility-steps"}}
    html_text = report.render_html(doc)
    assert "id='utility-table'" in html_text and "give --utility-augment and --utility-steps" in html_text
    assert "MAE ratio, synthetic-trained / real-trained (1; lower is better)" in html_text
    assert "utility: 1 / 1" in html_text and "privacy:" not in html_text


def test_details_show_both_baselines_and_fit_the_page(honest_doc):
    from telcosim.evaluation.report import DETAIL_COLUMNS, baseline_text

    page = render_html(honest_doc)
    assert sum(w for _, w in DETAIL_COLUMNS) == pytest.approx(100)
    assert page.count("class='details-table'") == 5 and "table-layout:fixed" in page
    b = honest_doc["metrics"]["handover_rate_moving"]["baseline"]
    text = baseline_text(b)
    assert f"set by {b['set_by']}" in text and "half splits by" in text and "leave one group out, by app" in text
    assert "Download" in text and "Amazon_Prime" in text and text in page
    assert f"judged on the <b>{honest_doc['settings']['part']}</b> part" in page
    assert baseline_text(None) == "–"
