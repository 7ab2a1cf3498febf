"""The fidelity report: ``metrics.json`` (the document of :func:`evaluation.fidelity.evaluate`) and
``report.html``, one self-contained page (plots as inline SVG drawn with matplotlib, no script,
no network access).

The page opens with a one-screen summary (pass count, the gate and its required failures, a table
of every metric coloured pass / fail / not evaluated, and two headline plots: hourly profiles and
per-cell load distributions, synthetic against real); the details follow: per group of metrics
every figure (definition, source, baseline, tolerance, notes) and further plots.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

SYN_COLOUR = "#1f77b4"
REAL_COLOUR = "#d62728"
GROUPS = ("temporal", "cell load", "mobility", "handover", "usage")
STATUS_TEXT = {"pass": "pass", "fail": "FAIL", "not_evaluated": "n/a"}


# --------------------------------------------------------------------------
# plots (matplotlib, object API only: no pyplot state, no GUI backend)
# --------------------------------------------------------------------------


def _figure(w: float, h: float):
    from matplotlib.figure import Figure  # lazy: matplotlib is slow to import; only figures need it

    return Figure(figsize=(w, h), layout="constrained")


def _svg(fig) -> str:
    import matplotlib  # lazy: matplotlib is slow to import; only figures need it

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "telcosim", "font.size": 9}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "telcosim evaluate"})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def plot_hourly(plots: dict) -> str | None:
    """2 x 2 panels, one per service: synthetic vs real hourly profile (mean 1)."""
    hourly = plots.get("hourly") or {}
    if not hourly:
        return None
    svcs = [s for s in ("voice", "sms", "data", "all") if s in hourly]
    fig = _figure(5.6, 3.9)
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, svc in zip(axes, svcs + [None] * (4 - len(svcs)), strict=True):
        if svc is None:
            ax.set_visible(False)
            continue
        d = hourly[svc]
        ax.plot(range(24), np.asarray(d["synthetic"], float), color=SYN_COLOUR, lw=1.6, label="synthetic (run)")
        ax.plot(range(24), np.asarray(d["real"], float), color=REAL_COLOUR, lw=1.6, ls="--",
                label=f"real ({d['source']})")
        ax.set_title(f"{svc}", fontsize=9)
        ax.set_xticks([0, 6, 12, 18, 23])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", frameon=False)
    for ax in axes[2:]:
        ax.set_xlabel("hour of day (local time, h)")
    for ax in axes[::2]:
        ax.set_ylabel("load / daily mean (1)")
    fig.suptitle("Hourly profile: synthetic vs real", fontsize=10)
    return _svg(fig)


def plot_load_cdf(plots: dict) -> str | None:
    """CDF of per-cell hourly load normalised to the cell's mean, synthetic vs real."""
    cdfs = plots.get("load_cdf") or {}
    if not cdfs:
        return None
    fig = _figure(5.6, 2.6)
    axes = fig.subplots(1, len(cdfs), squeeze=False).ravel()
    for ax, (svc, d) in zip(axes, cdfs.items(), strict=True):
        for key, colour, ls, label in (("synthetic", SYN_COLOUR, "-", "synthetic (run)"),
                                       ("real", REAL_COLOUR, "--", f"real ({d['source']})")):
            if d.get(key):
                ax.plot(d[key]["x"], d[key]["p"], color=colour, ls=ls, lw=1.6, label=label)
        ax.set_title(f"{svc}", fontsize=9)
        ax.set_xlabel("cell-hour load / cell mean (x)")
        ax.set_xlim(0, 4.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right", frameon=False)
    axes[0].set_ylabel("share of cell-hours <= x")
    fig.suptitle("Per-cell load distribution (CDF)", fontsize=10)
    return _svg(fig)


def plot_weekly(plots: dict) -> str | None:
    weekly = plots.get("weekly") or {}
    if not weekly:
        return None
    fig = _figure(8.0, 1.9 * len(weekly))
    axes = fig.subplots(len(weekly), 1, squeeze=False, sharex=True).ravel()
    for ax, (svc, d) in zip(axes, weekly.items(), strict=True):
        syn = np.asarray(d["synthetic"], float)
        ax.plot(range(168), syn, color=SYN_COLOUR, lw=1.3, label="synthetic (run; gaps: hours of week not covered)")
        ax.plot(range(168), np.asarray(d["real"], float), color=REAL_COLOUR, lw=1.1, ls="--", label=f"real ({d['source']})")
        ax.set_ylabel("load / mean (1)")
        ax.set_title(svc, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", frameon=False)
    axes[-1].set_xticks(range(0, 168, 24), ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
    axes[-1].set_xlabel("hour of week (local time, day ticks at 00 h)")
    fig.suptitle("Weekly profile: synthetic vs real", fontsize=10)
    return _svg(fig)


def plot_move_by_hour(plots: dict) -> str | None:
    d = plots.get("move_by_hour")
    if not d or d.get("synthetic") is None or d.get("real") is None:
        return None
    fig = _figure(5.6, 2.6)
    ax = fig.subplots()
    ax.plot(range(24), np.asarray(d["synthetic"], float), color=SYN_COLOUR, lw=1.6, label="synthetic (run)")
    ax.plot(range(24), np.asarray(d["real"], float), color=REAL_COLOUR, lw=1.6, ls="--",
            label=f"real ({d['source']})")
    ax.set_xlabel("hour of day h (h)")
    ax.set_ylabel("P(location h+1 != h)")
    ax.set_title("Hourly move probability", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def plot_duration_cdf(plots: dict) -> str | None:
    d = plots.get("duration_cdf")
    if not d or not d.get("synthetic") or not d.get("real"):
        return None
    fig = _figure(5.6, 2.6)
    ax = fig.subplots()
    ax.plot(d["synthetic"]["x"], d["synthetic"]["p"], color=SYN_COLOUR, lw=1.6, label="synthetic (run)")
    ax.plot(d["real"]["x"], d["real"]["p"], color=REAL_COLOUR, lw=1.6, ls="--", label=f"real ({d['source']})")
    ax.set_xscale("log")
    ax.set_xlabel("call duration (s, log scale)")
    ax.set_ylabel("share of calls <= x")
    ax.set_title("Answered-call duration (CDF)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def plot_ratios(metrics: dict) -> str | None:
    """distance / tolerance per evaluated metric (1 = the limit), log scale, coloured by status."""
    rows = [(n, m["distance"] / m["tolerance"], m["status"]) for n, m in metrics.items()
            if m["status"] != "not_evaluated" and m.get("tolerance")]
    if not rows:
        return None
    fig = _figure(8.0, 0.22 * len(rows) + 1.0)
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    vals = [max(r[1], 1e-3) for r in rows]
    ax.barh(y, vals, color=["#2ca02c" if r[2] == "pass" else REAL_COLOUR for r in rows], label="distance / tolerance")
    ax.axvline(1.0, color="black", lw=1, ls=":", label="tolerance (= 1)")
    ax.set_yticks(y, [r[0] for r in rows], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("distance / tolerance (1, log scale; <= 1 passes)")
    ax.set_title("How far each metric is from its tolerance", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    return _svg(fig)


def plot_utility(utility: dict) -> str | None:
    """MAE ratio synthetic-trained / real-trained per forecasting task, with the limit."""
    rows = [(n, t["ratio_mae"], t["status"]) for n, t in (utility or {}).get("tasks", {}).items()
            if t.get("ratio_mae") is not None]
    if not rows:
        return None
    limit = utility["tasks"][rows[0][0]]["limit"]
    fig = _figure(5.6, 0.35 * len(rows) + 1.4)
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    ax.barh(y, [r[1] for r in rows], color=["#2ca02c" if r[2] == "pass" else REAL_COLOUR for r in rows])
    ax.axvline(1.0, color="grey", lw=1, ls=":", label="as good as real-trained (1)")
    ax.axvline(limit, color="black", lw=1, ls="--", label=f"limit ({limit:g})")
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    ax.set_xlabel("MAE ratio, synthetic-trained / real-trained (1; lower is better)")
    ax.set_title("Train synthetic, test real: cell-load forecasting", fontsize=10)
    fig.legend(fontsize=7, loc="outside lower center", ncols=2, frameon=False)
    ax.grid(alpha=0.3, axis="x")
    return _svg(fig)


def plot_dcr(privacy: dict) -> str | None:
    """CDFs of the distance to the closest training record: synthetic vs held-out records."""
    cdf = ((privacy or {}).get("dcr") or {}).get("cdf") or {}
    if not cdf.get("synthetic_to_training") or not cdf.get("held_out_to_training"):
        return None
    fig = _figure(5.6, 2.6)
    ax = fig.subplots()
    for key, colour, ls, label in (("synthetic_to_training", SYN_COLOUR, "-", "synthetic -> training"),
                                   ("held_out_to_training", REAL_COLOUR, "--", "held-out real -> training")):
        x = np.maximum(np.asarray(cdf[key]["x"], float), 1e-3)
        ax.plot(x, cdf[key]["p"], color=colour, ls=ls, lw=1.6, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("distance to closest training record (robust-scaled features, 1; log scale)")
    ax.set_ylabel("share of records <= x")
    ax.set_title("Distance to closest record (DCR)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def _risk_rows(privacy: dict) -> list[tuple[str, dict]]:
    rows = []
    so = privacy.get("singling_out") or {}
    for mode in ("univariate", "multivariate"):
        if so.get(mode):
            rows.append((f"singling out, {mode}", so[mode]["risk"]))
    if privacy.get("linkability"):
        rows.append(("linkability", privacy["linkability"]["risk"]))
    for secret, d in ((privacy.get("inference") or {}).get("secrets") or {}).items():
        rows.append((f"inference: {secret}", d["risk"]))
    return rows


def plot_risks(privacy: dict) -> str | None:
    """anonymeter-style risks with their 95% intervals and the limit."""
    rows = [(n, r) for n, r in _risk_rows(privacy or {}) if r.get("value") is not None]
    if not rows:
        return None
    fig = _figure(5.6, 0.35 * len(rows) + 1.1)
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    v = np.array([r["value"] for _, r in rows], float)
    lo = np.array([r["low"] for _, r in rows], float)
    hi = np.array([r["high"] for _, r in rows], float)
    ax.errorbar(v, y, xerr=[np.maximum(v - lo, 0), np.maximum(hi - v, 0)], fmt="o", color=SYN_COLOUR, capsize=3,
                label="risk, 95% interval")
    limit = (privacy.get("linkability") or {}).get("limit", 0.1)
    ax.axvline(limit, color="black", lw=1, ls="--", label=f"limit ({limit:g})")
    ax.axvline(0.0, color="grey", lw=1, ls=":")
    ax.set_yticks(y, [n for n, _ in rows], fontsize=8)
    ax.set_xlim(-0.05, 1.0)
    ax.set_xlabel("risk = (main - control) / (1 - control) (1)")
    ax.set_title("Singling out, linkability, inference (anonymeter-style)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    return _svg(fig)


# --------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------


def fmt(v: Any) -> str:
    """A value for a table cell: numbers with 3-4 significant digits, shapes and samples briefly."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if isinstance(v, float) and not math.isfinite(v):
            return "–"
        a = abs(v)
        if a != 0 and (a < 1e-3 or a >= 1e5):
            return f"{v:.3g}"
        return f"{v:.4g}"
    if isinstance(v, list):
        return f"shape[{len(v)}]"
    if isinstance(v, dict) and "p50" in v:
        return f"p50 {fmt(v['p50'])}"
    return html.escape(str(v))


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;margin:12px 18px;color:#222;
font-size:13px}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:16px;margin:18px 0 6px;border-bottom:1px solid #ccc}
h3{font-size:14px;margin:12px 0 4px}
.sub{color:#555;margin:0 0 8px}
.cards{display:flex;gap:10px;margin:6px 0 10px}
.card{border:1px solid #ccc;border-radius:6px;padding:6px 12px;min-width:120px}
.card b{font-size:20px;display:block}
.card.bad{border-color:#d62728;background:#fdecea}.card.good{border-color:#2ca02c;background:#eaf6ea}
.summary{display:grid;grid-template-columns:minmax(0,56fr) minmax(0,44fr);gap:14px;align-items:start}
table{border-collapse:collapse;width:100%}
th,td{border:1px solid #ddd;padding:2px 5px;text-align:left;vertical-align:top}
th{background:#f3f3f3}
table.compact td,table.compact th{font-size:11.5px;padding:1px 4px;line-height:1.25}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.pass{background:#d4edda;color:#155724;font-weight:600}
td.fail{background:#f8d7da;color:#721c24;font-weight:600}
td.not_evaluated{background:#eee;color:#666}
.req{color:#8a4b00;font-weight:700}
.plots svg{max-width:100%;height:auto;display:block;margin-bottom:6px}
.details svg{max-width:100%;height:auto}
table.details-table{table-layout:fixed}
table.details-table td,table.details-table th{overflow-wrap:anywhere;font-size:12px;padding:2px 4px}
table.details-table td.num{white-space:normal}
table.details-table .note{font-size:11px}
.note{color:#555;font-size:12px}
ul{margin:4px 0 4px 18px;padding:0}
"""


def _status_cell(m: dict) -> str:
    st = m["status"]
    return f'<td class="{st}">{STATUS_TEXT[st]}</td>'


def _summary_table(metrics: dict) -> str:
    rows = ["<table class='compact' id='summary-table'><thead><tr><th>metric</th><th>source</th>"
            "<th>synthetic</th><th>real</th><th>distance</th><th>tolerance</th><th>status</th></tr></thead><tbody>"]
    for name, m in metrics.items():
        req = " <span class='req' title='required by the gate'>R</span>" if m["required"] else ""
        rows.append(f"<tr><td>{html.escape(name)}{req}</td><td>{html.escape(m['source'] or '–')}</td>"
                    f"<td class='num'>{fmt(m['synthetic'])}</td><td class='num'>{fmt(m['real'])}</td>"
                    f"<td class='num'>{fmt(m['distance'])}</td><td class='num'>{fmt(m['tolerance'])}</td>"
                    f"{_status_cell(m)}</tr>")
    rows.append("</tbody></table>")
    return "".join(rows)


# column widths of the details table (percent of the page): it is laid out fixed and its cells wrap,
# so it never needs more than the window's width (checked at 1400 px in test_report_browser.py)
DETAIL_COLUMNS = (("metric and definition", 28), ("source", 6), ("synthetic", 6.5), ("real", 6.5),
                  ("distance", 6.5), ("baseline (real vs real)", 19), ("tolerance", 8), ("status", 4.5),
                  ("notes", 15))


def baseline_text(b: dict | None) -> str:
    """The baseline cell: its value, which rule set it, and both figures with their parts."""
    if not b:
        return "–"
    e = html.escape
    parts = []
    if b.get("per_split"):
        parts.append(f"half splits by {e(b['split_by'])}: {fmt(b['half_splits'])} (median of "
                     f"{len(b['per_split'])}: {', '.join(fmt(x) for x in b['per_split'])})")
    if b.get("per_group"):
        parts.append(f"leave one group out, by {e(b['group_by'])}: {fmt(b['groups'])} (median of "
                     f"{', '.join(f'{e(str(g))} {fmt(x)}' for g, x in b['per_group'].items())})")
    return (f"{fmt(b['distance'])} <span class='note'>set by {e(b.get('set_by') or '-')}</span><br>"
            f"<span class='note'>{'; '.join(parts)}</span>")


def _details_table(metrics: dict, group: str) -> str:
    items = [(n, m) for n, m in metrics.items() if m["group"] == group]
    if not items:
        return ""
    cols = "".join(f"<col style='width:{w}%'>" for _, w in DETAIL_COLUMNS)
    head = "".join(f"<th>{html.escape(t)}</th>" for t, _ in DETAIL_COLUMNS)
    rows = [f"<table class='details-table'><colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead><tbody>"]
    for name, m in items:
        rule = m.get("tolerance_short") or m["tolerance_rule"]
        tol = (f"{fmt(m['tolerance'])}<br><span class='note' title='{html.escape(m['tolerance_rule'], quote=True)}'>"
               f"{html.escape(rule)}</span>")
        req = " <span class='req'>required</span>" if m["required"] else ""
        src = html.escape(m["source"] or "–") + (f"<br><span class='note'>{html.escape(m['part'])} part</span>"
                                                 if m.get("part") else "")
        rows.append(f"<tr><td><b>{html.escape(m['title'])}</b> <code>{html.escape(name)}</code>{req}<br>"
                    f"<span class='note'>{html.escape(m['definition'])} [{html.escape(m['unit'])}]</span></td>"
                    f"<td>{src}</td><td class='num'>{fmt(m['synthetic'])}</td>"
                    f"<td class='num'>{fmt(m['real'])}</td>"
                    f"<td class='num'>{fmt(m['distance'])}<br><span class='note'>{m['distance_kind']}</span></td>"
                    f"<td>{baseline_text(m.get('baseline'))}</td><td class='num'>{tol}</td>{_status_cell(m)}"
                    f"<td class='note'>{html.escape(m.get('note') or '')}</td></tr>")
    rows.append("</tbody></table>")
    return "".join(rows)


def _rate(r) -> str:
    """A Wilson rate [value, low, high] as 'v [lo, hi]'."""
    if not r or r[0] is None:
        return "–"
    return f"{fmt(r[0])} [{fmt(r[1])}, {fmt(r[2])}]"


def _risk(r) -> str:
    if not r or r.get("value") is None:
        return "–"
    return f"{fmt(r['value'])} [{fmt(r['low'])}, {fmt(r['high'])}]"


def _cls(status: str) -> str:
    return status if status in STATUS_TEXT else "not_evaluated"


def utility_section(u: dict) -> str:
    e = html.escape
    s = u["summary"]
    rows = ["<table id='utility-table'><thead><tr><th>task</th><th>real test set</th><th>lags (h)</th>"
            "<th>MAE synthetic-trained</th><th>MAE real-trained</th><th>MAE seasonal naive</th>"
            "<th>sMAPE syn / real</th><th>MAE ratio</th><th>status</th><th>notes</th></tr></thead><tbody>"]
    for name, t in u["tasks"].items():
        st, rt, nv = t.get("synthetic_trained") or {}, t.get("real_trained") or {}, t.get("seasonal_naive") or {}
        sm = (f"{fmt(st.get('smape'))} / {fmt(rt.get('smape'))}" if st else "–")
        rows.append(f"<tr><td><code>{e(name)}</code></td><td>{e(t['real'])}</td>"
                    f"<td>{e(', '.join(map(str, t.get('lags_h') or [])) or '–')}</td>"
                    f"<td class='num'>{fmt(st.get('mae'))}</td><td class='num'>{fmt(rt.get('mae'))}</td>"
                    f"<td class='num'>{fmt(nv.get('mae'))}</td><td class='num'>{sm}</td>"
                    f"<td class='num'>{fmt(t.get('ratio_mae'))}</td><td class='{_cls(t['status'])}'>"
                    f"{STATUS_TEXT.get(t['status'], e(t['status']))}</td><td class='note'>{e(t.get('note') or '')}</td></tr>")
    od = u.get("outage_detector") or {}
    od_status = od.get("status", "not_evaluated")
    rows.append(f"<tr><td><code>outage_detector</code></td><td colspan='7' class='note'>{e(od.get('note', ''))}"
                f"{(' (' + e(od['rule']) + ')') if od.get('rule') else ''}</td>"
                f"<td class='{_cls(od_status)}'>{STATUS_TEXT.get(od_status, e(od_status))}</td><td></td></tr>")
    rows.append("</tbody></table>")
    sets = "".join(f"<li><b>{e(k)}</b>: <code>{e(v['path'])}</code>; split by {e(v['split'])}; synthetic load: "
                   f"{e(v['synthetic_load'])} ({v['synthetic_series']} cells x {v['synthetic_hours']} h)</li>"
                   for k, v in u.get("sets", {}).items())
    return ("<h2 id='utility'>ML utility: train synthetic, test real</h2>"
            f"<p>{s['passed']} of {s['evaluated']} evaluated tasks pass ({e(s['rule'])}); model "
            f"<code>{e(u['model'])}</code>. Loads are normalised per series (x the series' mean), so MAE is in "
            f"units of a cell's mean hourly load.</p>{''.join(rows)}{plot_utility(u) or ''}<ul>{sets}</ul>")


def privacy_section(p: dict) -> str:
    e = html.escape
    s, th = p["summary"], p["thresholds"]
    rows = ["<table id='privacy-table'><thead><tr><th>check</th><th>result (95% interval)</th>"
            "<th>control / reference</th><th>pass rule</th><th>status</th></tr></thead><tbody>"]

    def row(name, result, control):
        st = p[name]["status"]
        rows.append(f"<tr><td>{e(name)}</td><td>{result}</td><td>{control}</td><td class='note'>"
                    f"{e(th.get(name, ''))}</td><td class='{_cls(st)}'>{STATUS_TEXT.get(st, e(st))}</td></tr>")

    d = p["dcr"]
    row("dcr", f"share of synthetic closer to training: {_rate([d['share_closer_to_training'], *d['share_ci']])}; "
        f"median DCR synthetic -> training {fmt(d['synthetic_to_training'].get('p50'))}",
        f"median DCR held-out -> training {fmt(d['held_out_to_training'].get('p50'))}; p5 ratio {fmt(d.get('p5_ratio'))}")
    m = p["mia"]
    row("mia", f"AUC {fmt(m['auc'])} [{fmt(m['auc_ci'][0])}, {fmt(m['auc_ci'][1])}] (bootstrap over people); "
        f"person level {fmt(m['person_level_auc'])}",
        f"{m['members']} member / {m['non_members']} non-member person-days ({m['member_persons']} / "
        f"{m['non_member_persons']} people)")
    so = p["singling_out"]["multivariate"]
    row("singling_out", f"risk {_risk(so['risk'])}; success {_rate(so['main_rate'])} of {so['attacks']} attacks",
        f"control {_rate(so['control_rate'])}; baseline {_rate(so['baseline_rate'])}")
    lk = p["linkability"]
    row("linkability", f"risk {_risk(lk['risk'])}; success {_rate(lk['main_rate'])} of {lk['attacks']} attacks",
        f"control {_rate(lk['control_rate'])}; baseline {_rate(lk['baseline_rate'])}")
    inf = p["inference"]
    row("inference", "; ".join(f"{e(k)}: risk {_risk(v['risk'])}, success {_rate(v['main_rate'])}"
                               for k, v in inf["secrets"].items()) + f" ({inf['attacks_per_secret']} attacks each)",
        "; ".join(f"{e(k)}: control {_rate(v['control_rate'])}, baseline {_rate(v['baseline_rate'])}"
                  for k, v in inf["secrets"].items()))
    un = p["unicity"]
    row("unicity", f"synthetic draws matching a training trace: {_rate(un['synthetic']['match_share'])}, uniquely "
        f"{_rate(un['synthetic']['unique_match_share'])} ({un['synthetic']['draws']} draws of {un['points']} points)",
        f"held-out: {_rate(un['control']['match_share'])}, uniquely {_rate(un['control']['unique_match_share'])}")
    c = p["canary"]
    if c.get("status") == "not_evaluated":
        row("canary", e(c.get("note", "")), "–")
    else:
        row("canary", f"empirical epsilon lower bound {fmt(c['epsilon_lower_bound'])} ({c['trials']} releases with and "
            f"{c['trials']} without the canary)", f"claimed epsilon of the release {fmt(c['claimed_epsilon'])} "
            f"(total {fmt(c['total_epsilon'])}); {e(c['release'])}")
    rows.append("</tbody></table>")
    led = p.get("ledger") or {}
    if led.get("present"):
        spent = (led.get("ledger") or {}).get("spent") or {}
        ledger = (f"<p>DP ledger of the run (<code>{e(str(led.get('file')))}</code>): spent epsilon "
                  f"{fmt(spent.get('epsilon'))}, delta {fmt(spent.get('delta'))}, "
                  f"{len((led.get('ledger') or {}).get('releases') or [])} releases.</p>")
    else:
        ledger = f"<p>DP ledger: {e(led.get('note', 'none'))}.</p>"
    r = p["records"]
    return ("<h2 id='privacy'>Privacy</h2>"
            f"<p>{s['passed']} of {s['evaluated']} evaluated checks pass"
            f"{'; high risk: ' + e(', '.join(s['high_risk'])) if s['high_risk'] else ''}. Real "
            f"<code>{e(p['real'])}</code> split by person (seed {p['split']['seed']}): "
            f"{len(p['split']['training_persons'])} people in the training half ({r['training']} person-days), "
            f"{len(p['split']['held_out_persons'])} held out ({r['held_out']}); synthetic {r['synthetic']} person-days of "
            f"{r['synthetic_persons']} subscribers. Each attack on training people is compared with the same attack "
            f"on held-out people (the control).</p>{''.join(rows)}{ledger}"
            f"<div class='plots'>{plot_dcr(p) or ''}{plot_risks(p) or ''}</div>")


def _extra_cards(doc: dict) -> str:
    out = []
    if "utility" in doc:
        us = doc["utility"]["summary"]
        good = us["evaluated"] > 0 and us["passed"] == us["evaluated"]
        out.append(f"<div class='card {'good' if good else 'bad'}' id='utility-card'><b>utility: {us['passed']} / "
                   f"{us['evaluated']}</b><a href='#utility'>forecasting tasks</a> within the MAE ratio limit</div>")
    if "privacy" in doc:
        ps = doc["privacy"]["summary"]
        out.append(f"<div class='card {'bad' if ps['high_risk'] else 'good'}' id='privacy-card'><b>privacy: "
                   f"{ps['passed']} / {ps['evaluated']}</b><a href='#privacy'>checks</a> pass"
                   f"{(': high risk ' + html.escape(', '.join(ps['high_risk']))) if ps['high_risk'] else ''}</div>")
    return "".join(out)


def coverage_section(c: dict) -> str:
    """Coverage of strata against the targets (evaluation.coverage.coverage_metrics)."""
    e = html.escape
    rows = ["<table id='coverage-table'><thead><tr><th>stratum</th><th>records</th><th>share</th>"
            "<th>target</th><th>status</th><th>records missing</th></tr></thead><tbody>"]
    for t in c["strata"]:
        target = ", ".join(f"{k.replace('_', ' ')} {fmt(v)}" for k, v in t["target"].items())
        st = "pass" if t["flag"] == "ok" else "fail"
        rows.append(f"<tr><td><code>{e(t['name'])}</code></td><td class='num'>{fmt(t['count'])}</td>"
                    f"<td class='num'>{fmt(t['share'])}</td><td>{e(target)}</td>"
                    f"<td class='{_cls(st)}'>{'ok' if st == 'pass' else 'UNDER'}</td>"
                    f"<td class='num'>{fmt(t.get('missing_records', 0))}</td></tr>")
    rows.append("</tbody></table>")
    flagged = c.get("flagged") or []
    return ("<h2 id='coverage'>Coverage of strata</h2>"
            f"<p>{len(c['strata']) - len(flagged)} of {len(c['strata'])} targets met over {fmt(c['total'])} "
            f"{e(c['unit'])} (targets: <code>{e(str(c.get('targets_file')))}</code>). Under-covered strata can be "
            "filled with <code>telcosim rebalance</code> (docs/rebalance.md).</p>" + "".join(rows))


def render_html(doc: dict) -> str:
    """The report page of a metrics document."""
    s, syn, metrics, plots = doc["summary"], doc["synthetic"], doc["metrics"], doc.get("plots", {})
    e = html.escape
    gate_bad = s["gate"] == "fail"
    req_fail = s["required_failed"] + ([n for n in s["required_not_evaluated"]]
                                      if s["required_source"] == "--require" else [])
    failed_list = ", ".join(e(n) for n in s["failed_metrics"]) or "none"
    head = (f"<h1>telcosim fidelity report</h1><p class='sub'>run <code>{e(str(syn.get('path')))}</code> "
            f"(scenario {e(str(syn.get('scenario')))}, seed {e(str(syn.get('seed')))}, "
            f"{fmt(syn.get('subscribers'))} subscribers, {fmt(syn.get('cells'))} cells, {fmt(syn.get('days'))} "
            f"day(s)) against real data: {', '.join(e(k) for k in doc['real']) or 'none'}; judged on the "
            f"<b>{e(str(doc['settings'].get('part', 'all')))}</b> part of each real set</p>")
    cards = (
        "<div class='cards' id='summary'>"
        f"<div class='card {'good' if s['failed'] == 0 else 'bad'}'><b>{s['passed']} / {s['evaluated']}</b>"
        "evaluated metrics pass</div>"
        f"<div class='card'><b>{s['failed']}</b>fail</div>"
        f"<div class='card'><b>{s['not_evaluated']}</b>not evaluated</div>"
        f"<div class='card {'bad' if gate_bad else 'good'}'><b>gate: {s['gate']}</b>"
        f"{len(req_fail)} required metric(s) failing: {', '.join(e(n) for n in req_fail) or 'none'}</div>"
        + _extra_cards(doc) + "</div>")
    hourly, load = plot_hourly(plots), plot_load_cdf(plots)
    summary = (f"<div class='summary'><div>{_summary_table(metrics)}<p class='note'>R = required by the gate "
               f"({e(s['required_source'])} list). Failing: {failed_list}.</p></div>"
               f"<div class='plots'>{hourly or ''}{load or ''}</div></div>")
    sections = (utility_section(doc["utility"]) if "utility" in doc else "") + (
        privacy_section(doc["privacy"]) if "privacy" in doc else "") + (
        coverage_section(doc["coverage"]) if "coverage" in doc else "")
    details = [sections, "<div class='details'><h2>Details</h2>"]
    extra = {"temporal": [plot_weekly(plots)], "mobility": [plot_move_by_hour(plots)],
             "usage": [plot_duration_cdf(plots)]}
    for g in GROUPS:
        t = _details_table(metrics, g)
        if t:
            details.append(f"<h3>{e(g.capitalize())}</h3>{t}")
            details.extend(p for p in extra.get(g, []) if p)
    ratios = plot_ratios(metrics)
    if ratios:
        details.append(f"<h3>Distance relative to tolerance</h3>{ratios}")
    details.append("</div>")
    st = doc["settings"]
    def part_text(pt: dict) -> str:
        if not pt or pt.get("unit") is None:
            return e((pt or {}).get("note", "used whole"))
        return (f"{e(pt['part'])} part by {e(pt['unit'])} (salt {e(pt['salt'])}, check share "
                f"{fmt(pt['check_share'])}: {pt['units_fit']} fit / {pt['units_check']} check units)")

    def group_text(g: dict) -> str:
        if not g or not g.get("names"):
            return f"groups: {e((g or {}).get('by') or 'none')}"
        return (f"groups by {e(g['by'])}: " + ", ".join(f"{e(str(n))} ({g['units'][n]} units)" for n in g["names"]))

    real_rows = "".join(
        f"<li><b>{e(k)}</b>: <code>{e(v['path'])}</code>; {part_text(v.get('part'))}; halves by "
        f"{e(v['split_by'])}, {v['units']} units{'' if v['splittable'] else ' — not split'}; "
        f"{group_text(v.get('groups'))}{(': ' + e(v['note'])) if v.get('note') else ''}</li>"
        for k, v in doc["real"].items())
    method = (
        "<h2>Method</h2><ul>"
        f"<li>Judged part: <b>{e(str(st.get('part', 'all')))}</b> of each real set (telcosim.realdata.splits: "
        "a unit is in the check part when a salted hash of its id falls below the check share; calibration "
        "fits on the fit part). Baselines are computed within the judged part.</li>"
        f"<li>Tolerance: {e(st['tolerance_rule'])}. Half splits: the median over {st['splits']} seeded "
        f"(seed {st['seed']}) splits of the judged part into two disjoint halves of its units, of the distance "
        "between the halves. Leave one group out: where a set has groups coarser than its units (drive traces "
        "by app, LTE series by cell, Milan squares by spatial band), the median over groups of the distance "
        "between the group and the rest. The baseline is the larger; each metric says which set it. Relative "
        "distances are divided by the judged part's value.</li>"
        f"<li>Per-cell load figures of real series are computed over windows of {st.get('window_hours', '–')} h "
        "(the run's length), each divided by its own mean; over-dispersion is compared at the real part's "
        "median count per cell-hour.</li>"
        f"<li>Tails (p90 10%, p99 20%, exceedance 20%): {e(st['tail_rule'])}; exceedance = share of cell-hours "
        f"above {st['exceedance_threshold_x_mean']:g} x the cell's mean.</li>"
        f"<li>A real set with fewer than {st['min_split_units']} units, or published aggregates, is not split: "
        "its metrics use the floor alone, as said per set below.</li>"
        f"<li>Holidays left out of real time series: {e(', '.join(st['holidays']) or 'none')}.</li>"
        f"</ul><h3>Real data</h3><ul>{real_rows}</ul>"
        "<p class='note'>Definitions, tolerances and the gate: docs/evaluate.md. The numbers are in "
        "metrics.json beside this page.</p>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>telcosim fidelity report: {e(str(syn.get('scenario')))}</title><style>{CSS}</style></head>"
            f"<body>{head}{cards}{summary}{''.join(details)}{method}</body></html>\n")


def write_report(doc: dict, out_dir: Path) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``report.html`` into ``out_dir`` (created; each file replaced
    atomically). Returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("metrics.json", json.dumps(doc, indent=2, allow_nan=False) + "\n"),
                       ("report.html", render_html(doc))):
        path = out_dir / name
        tmp = out_dir / f".{name}.partial"
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(path)
    return paths[0], paths[1]
