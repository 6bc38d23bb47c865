"""Reproduced vs published: every published number of the paper beside this run's value under the paper protocol.

For each entry of ``published`` in ``ctvlp/resources/reported_results.yaml`` (its source: abstract, table or
figure; its protocol; its pool) and each published model (RadFinder, and the best prior as the paper reports it),
one row: this run's value with its 95 % CI, the difference (this run - published), whether the published value lies
inside this run's CI, and the pool this run used beside the paper's. A pool that differs from the paper's (a demo's
tiny sets, a split other than the paper's) is printed as a mismatch, never hidden: the two numbers are then not the
same measurement. Entries with per-label values add one row per label (zero-shot AUC per class).
"""

from __future__ import annotations

from importlib import resources

import pandas as pd
import yaml

BEST_PRIOR = "best prior (as reported by the paper)"


def published_numbers() -> list[dict]:
    text = resources.files("ctvlp.resources").joinpath("reported_results.yaml").read_text()
    return yaml.safe_load(text)["published"]


def lookup(tree: dict, path) -> object:
    """``tree[path[0]][path[1]]...``, None where a key is missing."""
    node = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _estimate(entry, scale: float) -> dict:
    """{value, low, high} in the published unit from a metrics entry (a CI dict, a plain number or None)."""
    if isinstance(entry, dict):
        value, low, high = entry.get("value"), entry.get("ci_low"), entry.get("ci_high")
    elif isinstance(entry, (int, float)):
        value, low, high = entry, None, None
    else:
        value = low = high = None

    def num(x):
        return None if x is None or x != x else float(x) * scale
    return {"value": num(value), "low": num(low), "high": num(high)}


def _pool_used(ours: dict, metrics: dict):
    """The pool size this run used for a number: a stored count, or (Merlin) the fixed pool size if this run
    has pools of that size at all."""
    pool = ours.get("pool")
    if isinstance(pool, list):
        found = lookup(metrics, pool)
        return int(found) if isinstance(found, (int, float)) else None
    if pool is not None:  # a fixed pool size: present only when this run could cut pools of it
        entry = lookup(metrics, ours.get("pool_key", []))
        return int(pool) if isinstance(entry, dict) and entry.get("value") is not None else None
    return None


def pool_check(used, paper) -> str:
    if paper is None:
        return "paper's pool not stated"
    if used is None:
        return "MISMATCH: this run has no such pool"
    return "same pool" if int(used) == int(paper) else f"MISMATCH: {used:,} vs {int(paper):,}"


def comparison_rows(metrics: dict, run: str, numbers: list[dict] | None = None) -> list[dict]:
    """The rows of one run: one per published number, model (and variant or label where there are several)."""
    rows = []
    for number in numbers if numbers is not None else published_numbers():
        ours, scale = number["ours"], float(number.get("scale", 1.0))
        paths = ours["value"] if isinstance(ours["value"], dict) else {"": ours["value"]}
        used = _pool_used(ours, metrics)
        pool = number["pool"]
        items = [(variant, path, None) for variant, path in paths.items()]
        for label in (number.get("per_label") or {}):  # per-label values: the zero-shot entry's per_class
            base = next(iter(paths.values()))[:-1]
            items.append((label, [*base, "per_class", label], label))
        models = [(number.get("model", "RadFinder (paper)"), number.get("value"))]
        if number.get("best_prior") is not None:
            models.append((BEST_PRIOR, number["best_prior"]))
        for variant, path, label in items:
            if label is None:
                estimate = _estimate(lookup(metrics, path), scale)
            else:
                per = lookup(metrics, path) or {}
                ci = per.get("auc_ci") or [None, None]
                estimate = _estimate({"value": per.get("auc"), "ci_low": ci[0], "ci_high": ci[1]}, scale)
            for model, value in models:
                if label is not None:
                    value = (number.get("per_label") or {}).get(label) if model != BEST_PRIOR else None
                    if value is None:
                        continue
                rows.append(_row(run, number, model, value, estimate, variant, used, pool))
    return rows


def _row(run, number, model, published, estimate, variant, used, pool) -> dict:
    v, lo, hi = estimate["value"], estimate["low"], estimate["high"]
    if v is None:
        ours = "NA (not computed in this run)"
    elif lo is None or hi is None:
        ours = f"{v:.1f} [CI NA]"
    else:
        ours = f"{v:.1f} [{lo:.1f}, {hi:.1f}]"
    diff = "NA" if v is None or published is None else f"{v - published:+.1f}"
    if published is None or v is None or lo is None or hi is None:
        inside = "NA"
    else:
        inside = "yes" if lo <= published <= hi else "no"
    size = pool.get("size")
    return {"run": run, "number": number["metric"] + (f" [{variant}]" if variant else ""),
            "source": number["source"], "model (published)": model,
            "published": "not in our sources" if published is None else f"{published:.1f}",
            "this run [95 % CI]": ours, "difference": diff, "published inside CI": inside,
            "pool (paper)": f"{size:,} {pool.get('unit', '')}".strip() if size is not None else "not stated",
            "pool (this run)": "NA" if used is None else f"{used:,}",
            "pool check": pool_check(used, size),
            "protocol": number["protocol"]}


def comparison_table(metrics: dict[str, dict], runs: list[str], numbers: list[dict] | None = None) -> pd.DataFrame:
    """The rows of every run in ``runs`` (the reference run, and runs of released weights) that has metrics."""
    rows = [row for run in runs if run in metrics for row in comparison_rows(metrics[run], run, numbers)]
    return pd.DataFrame(rows)


def published_by_model(numbers: list[dict] | None = None) -> dict[str, dict[str, float | None]]:
    """{model: {number id: published value}}: RadFinder's and the best prior's numbers, for the paper table."""
    out: dict[str, dict[str, float | None]] = {}
    for number in numbers if numbers is not None else published_numbers():
        out.setdefault(number.get("model", "RadFinder (paper)"), {})[number["id"]] = number.get("value")
        if "best_prior" in number:
            out.setdefault(BEST_PRIOR, {})[number["id"]] = number.get("best_prior")
    return out


def comparison_caption(metrics: dict[str, dict]) -> str:
    boot = next((m["paper"]["bootstrap"] for m in metrics.values() if "paper" in m), None)
    boot_text = (f"{boot['ci']:.0f} % CI: percentile bootstrap over samples, {boot['resamples']} resamples"
                 if boot else "no bootstrap")
    return ("Reproduced vs published (arXiv 2603.02026), protocol: paper. Published values as restated from the "
            "paper's abstract (source column); best prior as the paper reports it. Difference = this run - "
            f"published. {boot_text} (Merlin: 2.5/97.5 percentiles of the pool repeats). 'pool check' compares "
            "the pool this run scored with the paper's: a MISMATCH means the two numbers are not the same "
            "measurement (the demo's tiny sets always mismatch).")
