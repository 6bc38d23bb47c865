"""The paper's claims in miniature: each one checked against this run's paired comparisons, and the
headline numbers beside the paper's.

Why a separate summary: the ablation table lists every difference with its CI, but a reviewer wants to
know which of the paper's statements the run decides, which it contradicts, which this run is too small to
decide (the CI holds 0: undecided, never "not reproduced"), and which it cannot test (a run left out of the
ablation table, a set without localization references). Every verdict is read
from ``eval/comparisons.json`` (paired patient bootstrap, run minus the reference run, on the hospital
test set) and the runs' ``metrics.json``; nothing is recomputed here.

    python -m ctvlp.evaluate.claims results [--reference full] [--prompt-set ensemble]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from ctvlp.evaluate.comparison import lookup

DECIDED, CONTRADICTED, UNDECIDED = "decided", "contradicted", "undecided at this size"
UNTESTED = "not testable here"
VERDICTS = (DECIDED, CONTRADICTED, UNDECIDED, UNTESTED)
# Non-inferiority margins of the "costs nothing" claim: full may be worse than no_localization by less than this
# (macro AUC points; mean rank as a fraction of the retrieval pool) and still count as costing nothing.
AUC_MARGIN, RANK_MARGIN = 0.05, 0.05


@dataclass(frozen=True)
class Claim:
    statement: str
    verdict: str
    evidence: str


def _diff(entry: dict | None) -> str:
    if not entry:
        return "n/a"
    return f"{entry['difference']:+.3g} [{entry['ci_low']:+.3g}, {entry['ci_high']:+.3g}]"


def direction(entry: dict | None, reference_better: str) -> str:
    """Verdict of "the reference run beats the other run" from the paired CI of (other - reference):
    ``reference_better`` is "positive" when a larger difference favours the reference (a lower-is-better metric
    such as MAE or mean rank), "negative" otherwise. Decided: the CI excludes 0 in the claimed direction;
    contradicted: it excludes 0 the other way; undecided at this size: it holds 0."""
    if not entry or entry.get("ci_low") is None or entry.get("ci_high") is None:
        return UNTESTED
    lo, hi = (entry["ci_low"], entry["ci_high"]) if reference_better == "positive" else (-entry["ci_high"],
                                                                                          -entry["ci_low"])
    return DECIDED if lo > 0 else CONTRADICTED if hi < 0 else UNDECIDED


def no_worse(entry: dict | None, reference_better: str, margin: float) -> str:
    """Verdict of "the reference is not worse than the other run" (non-inferiority within ``margin``): contradicted
    when the CI excludes 0 in the other run's favour, decided when the whole CI lies within the margin of the
    other run's favour or beyond it in the reference's, undecided at this size otherwise (a CI too wide to tell)."""
    if not entry or entry.get("ci_low") is None or entry.get("ci_high") is None:
        return UNTESTED
    # d > 0 favours the reference
    lo = entry["ci_low"] if reference_better == "positive" else -entry["ci_high"]
    hi = entry["ci_high"] if reference_better == "positive" else -entry["ci_low"]
    return CONTRADICTED if hi < 0 else DECIDED if lo > -margin else UNDECIDED


def combine(*verdicts: str) -> str:
    """All parts decided: decided; any contradicted: contradicted; any untested: not testable; else undecided."""
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    if UNTESTED in verdicts:
        return UNTESTED
    return DECIDED if all(v == DECIDED for v in verdicts) else UNDECIDED


def check_claims(comparisons: dict, prompt_set: str, pool: int | None = None) -> list[Claim]:
    """The paper's claims, each with its verdict (``VERDICTS``) and the paired differences behind it. ``pool``: the
    hospital retrieval pool, which scales the mean-rank margin of the "costs nothing" claim (none: untested)."""
    runs, ref = comparisons.get("runs", {}), comparisons.get("reference", "full")
    auc_key = f"macro_auc_{prompt_set}"
    claims = []
    for other, why in (("random_encoder", "a random window encoder"), ("no_localization", "no localization loss")):
        entry = runs.get(other, {}).get("loc_mae_mm")
        claims.append(Claim(f"{ref} localizes better than {why} ({other}): lower MAE", direction(entry, "positive"),
                            f"MAE {other} - {ref} (mm): {_diff(entry)}"))
    no_loc = runs.get("no_localization", {})
    rank, auc = no_loc.get("t2i_scans_mean_rank"), no_loc.get(auc_key)
    rank_margin = RANK_MARGIN * pool if pool else None
    claims.append(Claim(
        f"the localization loss costs no retrieval and no zero-shot AUC (no_localization vs {ref}; non-inferiority: "
        f"{ref} at most {AUC_MARGIN:g} AUC and {RANK_MARGIN:.0%} of the pool in mean rank worse)",
        combine(no_worse(auc, "negative", AUC_MARGIN),
                no_worse(rank, "positive", rank_margin) if rank_margin else UNTESTED),
        f"t2i mean rank: {_diff(rank)}" + (f" (margin {rank_margin:.3g})" if rank_margin else "")
        + f"; macro AUC: {_diff(auc)} (margin {AUC_MARGIN:g})"))
    rnd = runs.get("random_encoder", {})
    rank, auc = rnd.get("t2i_scans_mean_rank"), rnd.get(auc_key)
    claims.append(Claim(f"the self-supervised encoder ({ref}) beats the random one on zero-shot AUC",
                        direction(auc, "negative"), f"macro AUC random_encoder - {ref}: {_diff(auc)}"))
    claims.append(Claim(f"the self-supervised encoder ({ref}) beats the random one on text-to-image retrieval",
                        direction(rank, "positive"), f"t2i mean rank random_encoder - {ref}: {_diff(rank)}"))
    return claims


def _value(metrics: dict, *path: str) -> dict | None:
    return lookup(metrics, path)


def _ci(entry: dict | None, scale: float = 1.0, digits: int = 1) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    v, lo, hi = (entry[k] * scale if entry.get(k) is not None else float("nan")
                 for k in ("value", "ci_low", "ci_high"))
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def headline(metrics: dict, prompt_set: str) -> list[tuple[str, str, str]]:
    """(measure, this run, paper) rows: the reference run's numbers beside RadFinder's published ones."""
    paper = next(p for p in yaml.safe_load(resources.files("ctvlp.resources").joinpath("reported_results.yaml")
                                           .read_text())["peers"] if p["model"] == "RadFinder (paper)")
    rows = []
    for ds, key in (("hospital", None), ("ct_rate", "ctrate_auc"), ("rad_chestct", "radchest_auc")):
        entry = _value(metrics, ds, "zero_shot", prompt_set, "macro_auc")
        rows.append((f"zero-shot macro AUC x100, {ds}", _ci(entry, 100.0), f"{paper[key]:.1f}" if key else "-"))
    for ds in ("hospital", "ct_rate"):
        r = _value(metrics, ds, "retrieval", "t2i_scans")
        if r:
            rows.append((f"text-to-image R@10 (%), {ds}, pool {r['pool']}", _ci(r.get("R@10")),
                         f"{paper['ctrate_r10']:.1f} (pool {paper['ctrate_pool']})" if ds == "ct_rate" else "-"))
            rows.append((f"text-to-image mean rank, {ds}, pool {r['pool']}", _ci(r.get("mean_rank")), "-"))
    loc = _value(metrics, "hospital", "localization")
    if loc and "model" in loc:
        rows.append((f"localization MAE (mm), {loc['bin_mm']:g} mm bins", _ci(loc["model"]["mae_mm"]),
                     f"{paper['loc_mae_mm']:.1f} (12 mm bins)"))
        rows.append(("localization MAE (mm), middle-bin baseline", _ci(loc["middle_bin"]["mae_mm"]), "-"))
    return rows


def claims_markdown(comparisons_file: Path, metrics_file: Path, reference: str = "full",
                    prompt_set: str = "ensemble") -> str:
    """``eval/comparisons.json`` and the reference run's ``metrics.json`` -> the claims page (markdown)."""
    comparisons = json.loads(Path(comparisons_file).read_text())
    metrics = json.loads(Path(metrics_file).read_text())
    pool = (_value(metrics, "hospital", "retrieval", "t2i_scans") or {}).get("pool")
    lines = [f"# The paper's claims in miniature (reference run: {reference}, hospital test set)", "",
             "Verdicts: **decided** (the paired 95 % CI excludes 0 in the claimed direction), **contradicted** "
             "(it excludes 0 the other way), **undecided at this size** (it holds 0: this run is too small to "
             "tell), **not testable here** (a run or a measure is missing).", "",
             "| claim | verdict | evidence (run - reference, 95 % paired CI) |", "|---|---|---|"]
    lines += [f"| {c.statement} | {c.verdict} | {c.evidence} |" for c in check_claims(comparisons, prompt_set, pool)]
    lines += ["", f"## Headline numbers ({reference}) beside the paper's (RadFinder)", "",
              "| measure | this run [95 % CI] | paper |", "|---|---|---|"]
    lines += [f"| {m} | {v} | {p} |" for m, v, p in headline(metrics, prompt_set)]
    lines += ["", "The paper's numbers come from 20,000+ real CT scans with SPECTRE's pretrained encoder; the demo's "
              "from a few hundred synthetic phantoms. Compare directions and CIs, not magnitudes."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--reference", default="full")
    parser.add_argument("--prompt-set", default="ensemble")
    args = parser.parse_args()
    print(claims_markdown(args.results / "eval" / "comparisons.json",
                          args.results / "runs" / args.reference / "metrics.json", args.reference, args.prompt_set),
          end="")


if __name__ == "__main__":
    main()
