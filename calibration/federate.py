"""Federated calibration targets: merge targets.json files from several regions or teams.

Only released aggregates move between data holders: each holder runs ``telcosim targets`` on its
own data (with its own privacy budget) and hands over the JSON document; :func:`merge_documents`
combines them. Nothing here reads raw data, so the merge is post-processing of DP releases and
costs no privacy.

Weights. A target's weight in a file is its ``sample_size`` (or ``weight``) when the target
states one in *every* file that has it, else the file's weight: ``--weights`` on the command
line, else the document's top-level ``weight``, else 1 (files weigh equally). The rule used is
recorded per target in the merged document (``merge.rules``).

Merge rule per kind of target (matched on the name after the ``<kind>.`` prefix):

* ``*_profile`` (dict series -> 24 / 168 values): weighted mean, element by element, over the
  files that have the series, renormalised to mean 1.
* ``call_duration`` (lognormal of ln duration): pooled moments of ln(duration),
  ``mu = sum w mu_i / sum w``, ``sigma^2 = sum w (sigma_i^2 + mu_i^2) / sum w - mu^2`` (the
  mixture's mean and variance of the log); ``median_s`` and ``p90_s`` weighted means (an
  approximation: quantiles do not average exactly).
* ``contact_concentration``: the noisy pair histograms (``pairs_per_bin``) are *summed* (they are
  counts, so pooled data; weights do not apply) and the top-10% share recomputed from the sum
  with :func:`calibration.targets.contact_concentration_from_bins`. Bin edges must agree.
* ``hourly_move_probability``: ``by_hour`` weighted mean per hour, ``mean`` recomputed from it.
* ``holiday_effect``: ``per_day`` weighted mean per date (union of dates), ``mean`` weighted mean.
* everything else (rates, shares, ratios, dispersion, quantile tables of load distributions):
  weighted mean of each number; quantiles averaged this way are an approximation.

A value that is null in one file (noise made it undefined) is left out of that target's mean.

Refused, one line per problem (the CLI exits 2): unreadable or non-JSON files, a document
without ``schema_version`` / ``targets`` / ``privacy``, a ``schema_version`` other than the one
this code reads, a target whose value has a different structure in two files (a scalar vs a
table, 24 vs 168 values, other bin edges), contradictory units (a target's ``unit``, or the
document's ``units`` table, differing between files or from the canonical unit below), a target
that is aggregate in one file and individual-level in another, and exact (noise-free) documents
unless explicitly allowed (they are for tests and must never be published).

Privacy ledgers are not composed: each file's ledger covers its own holder's data. The merged
``privacy`` lists them per source (``per_source``); see :data:`MERGED_COMPOSITION`.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .targets import PAIR_BIN_EDGES, SCHEMA_VERSION, _clean, contact_concentration_from_bins

MERGED_COMPOSITION = (
    "per source, not composed: each source's ledger covers only that data holder's own data, and "
    "the sources are taken to hold disjoint people (separate regions or teams), so a person's "
    "privacy loss is the spend of the one source that holds their data (parallel composition). "
    "Nothing is composed across sources. If one person's data is in several sources, their loss is "
    "the sum of those sources' spends (basic sequential composition): this merge cannot check "
    "that, the data holders must.")
POST_PROCESSING = ("merging, fitting and the calibrated scenario read only released targets: "
                   "post-processing, no further privacy cost")

# Canonical units of the targets (name after the kind prefix). A file may state a target's unit
# (``"unit"`` in the target, or ``"units": {target: unit}`` at the top); it must agree.
UNITS = {
    "diurnal_profile": "mean-1 shape", "weekly_profile": "mean-1 shape",
    "area_load_distribution": "load per area-interval (as given)",
    "cell_load_distribution": "as given (cells: MB per hour; cdr: records per cell)",
    "over_dispersion": "1 (var/mean)", "holiday_effect": "1 (ratio)", "hourly_log_sigma": "1 (ln units)",
    "handover_rate_per_min_moving": "1/min", "dwell_time_s": "s", "ping_pong_share": "share",
    "radius_of_gyration_km": "km", "distinct_locations_per_day": "locations/day",
    "top_location_share": "share", "hourly_move_probability": "probability",
    "call_duration": "ln(s) for log_mu/log_sigma, s for median_s/p90_s", "sms_call_ratio": "1 (ratio)",
    "contact_concentration": "share",
}

RULES = {
    "profile": "weighted mean per element over files with the series, renormalised to mean 1",
    "call_duration": "pooled moments of ln(duration): mu weighted mean, sigma^2 = weighted mean of "
                     "(sigma_i^2 + mu_i^2) - mu^2; median_s/p90_s weighted means (approximation)",
    "contact_concentration": "pairs_per_bin summed over files (counts: pooled), top-10% share recomputed",
    "hourly_move_probability": "by_hour weighted mean per hour, mean recomputed",
    "holiday_effect": "per_day weighted mean per date, mean weighted mean",
    "generic": "weighted mean of each number (quantiles: approximation)",
}


class MergeError(ValueError):
    """The documents cannot be merged; ``problems``: one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def _suffix(name: str) -> str:
    return name.split(".", 1)[1] if "." in name else name


def _num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def load_document(path: str | Path) -> tuple[dict | None, list[str]]:
    """Read and check one targets document: (doc, []) or (None, problems)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [f"{path}: no such targets file"]
    except IsADirectoryError:
        return None, [f"{path}: is a folder; expected a targets JSON file written by 'telcosim targets'"]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}"]
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"]
    return doc, check_document(doc, str(path))


def check_document(doc: Any, label: str) -> list[str]:
    """Problems of one document on its own (structure, schema version, units)."""
    if not isinstance(doc, dict):
        return [f"{label}: expected a JSON object written by 'telcosim targets', got {type(doc).__name__}"]
    out = []
    missing = [k for k in ("schema_version", "targets", "privacy") if k not in doc]
    if missing:
        out.append(f"{label}: missing {', '.join(missing)}; expected a targets document written by "
                   "'telcosim targets'")
    v = doc.get("schema_version", SCHEMA_VERSION)
    if v != SCHEMA_VERSION:
        out.append(f"{label}: schema_version {v!r} is not supported (this telcosim reads schema_version "
                   f"{SCHEMA_VERSION}); re-create it with this version's 'telcosim targets'")
    t = doc.get("targets", {})
    if not isinstance(t, dict):
        out.append(f"{label}: targets: expected an object of target name -> target")
        t = {}
    if "privacy" in doc and not isinstance(doc["privacy"], dict):
        out.append(f"{label}: privacy: expected an object (the privacy ledger)")
    units = doc.get("units", {})
    if not isinstance(units, dict):
        out.append(f"{label}: units: expected an object of target name -> unit")
        units = {}
    w = doc.get("weight")
    if w is not None and not (_num(w) and math.isfinite(w) and w > 0):
        out.append(f"{label}: weight: {w!r} must be a positive number")
    for name, tg in t.items():
        if not isinstance(tg, dict) or "value" not in tg:
            out.append(f"{label}: target {name}: expected an object with a 'value'")
            continue
        unit = tg.get("unit", units.get(name))
        canon = UNITS.get(_suffix(name))
        if unit is not None and canon is not None and unit != canon:
            out.append(f"{label}: target {name}: unit {unit!r} contradicts the unit of this target "
                       f"({canon!r}); convert it before merging")
        for key in ("sample_size", "weight"):
            s = tg.get(key)
            if s is not None and not (_num(s) and math.isfinite(s) and s > 0):
                out.append(f"{label}: target {name}: {key} {s!r} must be a positive number")
    return out


def _structure(v: Any) -> Any:
    """A comparable description of a value's shape (types, keys, list lengths)."""
    if isinstance(v, dict):
        return {k: _structure(x) for k, x in sorted(v.items()) if k not in ("per_day",)}
    if isinstance(v, list):
        return ("list", len(v))
    if v is None or _num(v):
        return "number"
    return type(v).__name__


def _wmean(vals, weights) -> float | None:
    pairs = [(float(v), float(w)) for v, w in zip(vals, weights, strict=True)
             if _num(v) and math.isfinite(v)]
    if not pairs:
        return None
    sw = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / sw


def _wmean_lists(lists, weights) -> list[float | None]:
    n = len(lists[0])
    return [_wmean([lst[i] if lst[i] is not None else None for lst in lists], weights) for i in range(n)]


def _mean_one(v: list) -> list | None:
    a = np.array([np.nan if x is None else x for x in v], float)
    if not np.isfinite(a).any() or np.nanmean(a) <= 0:
        return None
    return list(a / np.nanmean(a))


def _merge_generic(vals, weights):
    first = vals[0]
    if isinstance(first, dict):
        return {k: _merge_generic([v[k] for v in vals if k in v], [w for v, w in zip(vals, weights, strict=True)
                                                                    if k in v])
                for k in first}
    if isinstance(first, list):
        if all(isinstance(x, int | float) or x is None for lst in vals for x in lst):
            return _wmean_lists(vals, weights)
        return first
    if first is None or _num(first):
        return _wmean(vals, weights)
    return first if all(v == first for v in vals) else " | ".join(map(str, vals))


def merge_value(name: str, vals: list, weights: list[float]) -> tuple[Any, str]:
    """The merged value of target ``name`` from its values in several files, and the rule used."""
    kind = _suffix(name)
    if kind.endswith("_profile"):
        series = sorted({s for v in vals for s in v})
        out = {}
        for s in series:
            have = [(v[s], w) for v, w in zip(vals, weights, strict=True) if v.get(s) is not None]
            out[s] = _mean_one(_wmean_lists([h[0] for h in have], [h[1] for h in have])) if have else None
        return out, RULES["profile"]
    if kind == "call_duration":
        mus = [(v.get("log_mu"), v.get("log_sigma"), w) for v, w in zip(vals, weights, strict=True)]
        ok = [(m, s, w) for m, s, w in mus if _num(m) and _num(s) and math.isfinite(m) and math.isfinite(s)]
        if ok:
            sw = sum(w for *_, w in ok)
            mu = sum(m * w for m, _, w in ok) / sw
            var = sum((s * s + m * m) * w for m, s, w in ok) / sw - mu * mu
            sigma = math.sqrt(max(var, 0.0))
        else:
            mu = _wmean([m for m, _, _ in mus], weights)
            sigma = None
        return ({"log_mu": mu, "log_sigma": sigma,
                 "median_s": _wmean([v.get("median_s") for v in vals], weights),
                 "p90_s": _wmean([v.get("p90_s") for v in vals], weights)}, RULES["call_duration"])
    if kind == "contact_concentration":
        bins = np.sum([np.clip(np.array([0 if x is None else x for x in v["pairs_per_bin"]], float), 0, None)
                       for v in vals], axis=0)
        return ({"top10pct_pairs_call_share": contact_concentration_from_bins(bins),
                 "pairs_per_bin": list(bins), "bin_edges": list(vals[0].get("bin_edges", PAIR_BIN_EDGES.tolist()))},
                RULES["contact_concentration"])
    if kind == "hourly_move_probability":
        by_hour = _wmean_lists([v["by_hour"] for v in vals], weights)
        fin = [x for x in by_hour if x is not None]
        return {"by_hour": by_hour, "mean": float(np.mean(fin)) if fin else None}, RULES["hourly_move_probability"]
    if kind == "holiday_effect":
        days = sorted({d for v in vals for d in v.get("per_day", {})})
        per_day = {}
        for d in days:
            have = [(v["per_day"][d], w) for v, w in zip(vals, weights, strict=True) if d in v.get("per_day", {})]
            per_day[d] = _wmean([h[0] for h in have], [h[1] for h in have])
        return {"per_day": per_day, "mean": _wmean([v.get("mean") for v in vals], weights)}, RULES["holiday_effect"]
    return _merge_generic(vals, weights), RULES["generic"]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _ledger_sources(doc: dict, label: str, sha: str | None) -> list[dict]:
    """A document's ledger as per-source entries (a merged document contributes its own list)."""
    p = doc.get("privacy", {}) or {}
    if "per_source" in p:
        return [dict(e, via=label) for e in p["per_source"]]
    return [{"source": label, "sha256": sha, "data": {k: v.get("path") if isinstance(v, dict) else v
                                                      for k, v in (doc.get("sources") or {}).items()},
             **{k: p.get(k) for k in ("composition", "budget", "spent", "disjoint_sources", "exact_no_privacy")},
             "releases": p.get("releases", [])}]


def merge_documents(docs: list[tuple[str, dict]], weights: list[float] | None = None,
                    allow_exact: bool = False, shas: list[str | None] | None = None) -> dict:
    """Merge (label, document) pairs into one targets document; :class:`MergeError` lists every
    problem. ``weights``: one per document (``--weights``), else the documents' own."""
    problems: list[str] = []
    for label, doc in docs:
        problems += check_document(doc, label)
        if not allow_exact and isinstance(doc, dict) and (doc.get("privacy") or {}).get("exact_no_privacy"):
            problems.append(f"{label}: exact values without noise (exact_no_privacy); such a document is for "
                            "tests only and must not be shared (pass --allow-exact to merge it anyway)")
    if weights is not None and len(weights) != len(docs):
        problems.append(f"--weights: {len(weights)} weight(s) for {len(docs)} targets file(s); give one per file")
        weights = None
    if not all(isinstance(d, dict) and isinstance(d.get("targets"), dict)
               and all(isinstance(t, dict) and "value" in t for t in d["targets"].values()) for _, d in docs):
        raise MergeError(problems)  # too broken to compare across files
    shas = shas or [None] * len(docs)
    fw = [float(weights[i]) if weights is not None else float(d.get("weight", 1.0)) for i, (_, d) in enumerate(docs)]
    names: dict[str, list[int]] = {}
    for i, (_, d) in enumerate(docs):
        for n in d["targets"]:
            names.setdefault(n, []).append(i)
    # cross-file compatibility
    for name, idx in names.items():
        tg = [docs[i][1]["targets"][name] for i in idx]
        labels = [docs[i][0] for i in idx]
        shapes = [_structure(t["value"]) for t in tg]
        for j in range(1, len(tg)):
            if shapes[j] != shapes[0] and not _compatible(shapes[0], shapes[j]):
                problems.append(f"target {name}: {labels[0]} and {labels[j]} give values of different structure "
                                f"({_describe(shapes[0])} vs {_describe(shapes[j])}); cannot merge")
            lv = [t.get("level") for t in (tg[0], tg[j])]
            if lv[0] != lv[1]:
                problems.append(f"target {name}: level {lv[0]!r} in {labels[0]} but {lv[1]!r} in {labels[j]}; "
                                "cannot merge an aggregate with an individual-level release")
        units = [(lab, t.get("unit", docs[i][1].get("units", {}).get(name)))
                 for lab, t, i in zip(labels, tg, idx, strict=True)]
        stated = [(lab, u) for lab, u in units if u is not None]
        if len({u for _, u in stated}) > 1 and _suffix(name) not in UNITS:  # known ones: checked per file
            problems.append(f"target {name}: contradictory units: " +
                            ", ".join(f"{u!r} in {lab}" for lab, u in stated) + "; convert before merging")
        masked = [("masked" in t) for t in tg]
        if any(masked) and not all(masked):
            problems.append(f"target {name}: volumes masked in " + ", ".join(lab for lab, m in zip(labels, masked, strict=True) if m)
                            + " but not in " + ", ".join(lab for lab, m in zip(labels, masked, strict=True) if not m)
                            + "; a rescaled level cannot be averaged with an absolute one: make every file with "
                            "'telcosim targets --mask-volumes', or none")
        if _suffix(name) == "contact_concentration":
            edges = {tuple(t["value"].get("bin_edges", PAIR_BIN_EDGES.tolist())) for t in tg}
            if len(edges) > 1:
                problems.append(f"target {name}: different pair bin edges across files; cannot pool the histograms")
    if problems:
        raise MergeError(problems)
    targets, rules = {}, {}
    for name, idx in names.items():
        tg = [docs[i][1]["targets"][name] for i in idx]
        labels = [docs[i][0] for i in idx]
        sizes = [t.get("sample_size", t.get("weight")) for t in tg]
        if all(s is not None for s in sizes) and len(tg) > 1:
            w, basis = [float(s) for s in sizes], "the targets' stated sample_size/weight"
        else:
            w = [fw[i] for i in idx]
            basis = ("the files' weights (--weights)" if weights is not None else "the files' weights "
                     "(top-level 'weight', default 1)")
        value, rule = merge_value(name, [t["value"] for t in tg], w)
        privacy = [{"source": lab, "privacy": t.get("privacy")} for lab, t in zip(labels, tg, strict=True)]
        merged = {"value": value, "source": tg[0].get("source"), "level": tg[0].get("level"),
                  "privacy": tg[0].get("privacy") if len(tg) == 1 else {"per_source": privacy},
                  "method": tg[0].get("method") if len(tg) == 1 else
                  f"merged from {len(tg)} files ({rule}; weights from {basis}); definition: {tg[0].get('method')}",
                  "merged_from": labels}
        if "masked" in tg[0]:
            merged["masked"] = tg[0]["masked"]
        if len(tg) > 1:
            merged["weights"] = dict(zip(labels, w, strict=True))
            rules[name] = {"rule": rule, "weights": basis}
        targets[name] = merged
    ledgers = [e for (label, d), sha in zip(docs, shas, strict=True) for e in _ledger_sources(d, label, sha)]
    spent = [e.get("spent") or {} for e in ledgers]
    privacy = {
        "composition": MERGED_COMPOSITION,
        "per_source": ledgers,
        "max_spent_per_source": {"epsilon": max((s.get("epsilon") or 0.0 for s in spent), default=0.0),
                                 "delta": max((s.get("delta") or 0.0 for s in spent), default=0.0)},
        "sum_if_not_disjoint": {"epsilon": sum(s.get("epsilon") or 0.0 for s in spent),
                                "delta": sum(s.get("delta") or 0.0 for s in spent)},
        "exact_no_privacy": any(e.get("exact_no_privacy") for e in ledgers),
        "post_processing": POST_PROCESSING,
    }
    sources = {label: {"sha256": sha, "sources": d.get("sources")} for (label, d), sha in zip(docs, shas, strict=True)}
    masking = _merged_masking(docs, targets)
    return _clean({"schema_version": SCHEMA_VERSION, "sources": sources, "targets": targets, "privacy": privacy,
                   "masking": masking,
                   "merge": {"files": [lab for lab, _ in docs], "file_weights": dict(zip([lab for lab, _ in docs], fw,
                                                                                          strict=True)),
                             "rules": rules}})


def _merged_masking(docs: list[tuple[str, dict]], targets: dict) -> dict:
    """The merged document's ``masking`` record: volumes are masked when any target is (the merge
    refuses a target masked in one file and not in another), with the rescaled and withheld fields
    of every file and each file's own record."""
    if not any("masked" in t for t in targets.values()):
        return {"volumes": False}
    rescaled: dict[str, list[str]] = {}
    withheld: dict[str, list[str]] = {}
    for _, d in docs:
        m = d.get("masking") or {}
        for src, dst in ((m.get("rescaled") or {}, rescaled), (m.get("withheld") or {}, withheld)):
            for name, fields in src.items():
                dst.setdefault(name, [])
                dst[name] += [f for f in fields if f not in dst[name]]
    method = next(((d.get("masking") or {}).get("method") for _, d in docs if (d.get("masking") or {}).get("method")), None)
    return {"volumes": True, "method": method, "rescaled": rescaled, "withheld": withheld,
            "per_source": {label: d.get("masking") for label, d in docs}}


def _compatible(a, b) -> bool:
    """Profiles may hold different series (a file without SMS), holiday tables other dates."""
    if isinstance(a, dict) and isinstance(b, dict):
        common = set(a) & set(b)
        return bool(common) and all(a[k] == b[k] or _compatible(a[k], b[k]) for k in common)
    return False


def _describe(s) -> str:
    if isinstance(s, dict):
        return "{" + ", ".join(f"{k}: {_describe(v)}" for k, v in s.items()) + "}"
    if isinstance(s, tuple):
        return f"{s[1]} values"
    return "a number" if s == "number" else str(s)


def load_and_merge(paths: list[Path], weights: list[float] | None = None, allow_exact: bool = False) -> dict:
    """Read ``paths`` and merge them; :class:`MergeError` lists every problem of every file."""
    docs, shas, problems = [], [], []
    for p in paths:
        doc, probs = load_document(p)
        problems += probs
        if doc is not None and not probs:
            docs.append((str(p), doc))
            shas.append(_sha256(Path(p).read_text(encoding="utf-8")))
    if problems:
        raise MergeError(problems)
    if len({lab for lab, _ in docs}) != len(docs):
        raise MergeError(["--targets: the same file is given twice; its data would count twice"])
    return merge_documents(docs, weights, allow_exact, shas)
