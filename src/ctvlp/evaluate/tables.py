"""Tables from metric JSON files only (no model, no data): Markdown and LaTeX (booktabs).

Each table carries its protocol in a caption line, and numbers taken from other papers are marked
"reported" with their protocol, never mixed silently with our own.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from ctvlp.evaluate.comparison import comparison_caption, comparison_table, published_by_model
from ctvlp.evaluate.paper import PAPER_NOTES
from ctvlp.evaluate.protocol import PROTOCOL_NOTES


def fmt(entry, digits: int = 1, scale: float = 1.0) -> str:
    """'value [low, high]' for a bootstrap entry, a plain number, or 'NA'."""
    if entry is None:
        return "NA"
    if isinstance(entry, dict):
        if entry.get("value") is None or entry["value"] != entry["value"]:
            return "NA"
        v = entry["value"] * scale
        lo, hi = entry.get("ci_low"), entry.get("ci_high")
        if lo is None or hi is None or lo != lo or hi != hi:  # a resample lost a class: the interval is NA
            return f"{v:.{digits}f} [NA]"
        return f"{v:.{digits}f} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"
    return f"{entry * scale:.{digits}f}" if isinstance(entry, float) else str(entry)


def fmt_diff(entry: dict | None, digits: int = 1, scale: float = 1.0) -> str:
    if not entry or entry["difference"] != entry["difference"]:
        return "NA"
    d, lo, hi = (entry[k] * scale for k in ("difference", "ci_low", "ci_high"))
    verdict = "within CI" if entry["within_ci"] else "outside CI"
    return f"{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}] ({verdict})"


def to_markdown(df: pd.DataFrame, caption: str) -> str:
    cols = list(df.columns)
    lines = [f"**{caption}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _tex_escape(text: str) -> str:
    for a, b in (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        text = text.replace(a, b)
    return text.replace("[", "{[}").replace("]", "{]}")


def to_latex(df: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table; the caption states the protocol."""
    cols = list(df.columns)
    body = [" & ".join(_tex_escape(str(v)) for v in row) + r" \\" for row in df.itertuples(index=False)]
    return "\n".join([r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex_escape(caption)}}}",
                      rf"\label{{tab:{label}}}", r"\begin{tabular}{" + "l" * len(cols) + "}", r"\toprule",
                      " & ".join(_tex_escape(c) for c in cols) + r" \\", r"\midrule", *body, r"\bottomrule",
                      r"\end{tabular}", r"\end{table}", ""])


def write_table(df: pd.DataFrame, caption: str, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, tex = out_dir / f"{name}.md", out_dir / f"{name}.tex"
    md.write_text(to_markdown(df, caption))
    tex.write_text(to_latex(df, caption, name))
    return [md, tex]


def reported_results() -> dict:
    return yaml.safe_load(resources.files("ctvlp.resources").joinpath("reported_results.yaml").read_text())


# ---- the tables ------------------------------------------------------------------------------------------
def _main_cells(m: dict, prompt_set: str, protocol: str) -> dict:
    """The main table's cells of one run under the chosen protocol (both are in every metrics.json)."""
    if protocol == "paper":
        paper = m.get("paper", {})
        ct = paper.get("ct_rate", {})
        t2i = ct.get("retrieval", {}).get("dup_all", {})
        return {"CT-RATE AUC": fmt(ct.get("zero_shot", {}).get("mean_auc"), 3),
                "Rad-ChestCT AUC": fmt(paper.get("rad_chestct", {}).get("zero_shot", {}).get("mean_auc"), 3),
                "CT-RATE R@10 (pool)": (f"{fmt(t2i.get('R@10_ci'))} (n={t2i['n']})" if "R@10_ci" in t2i else "NA"),
                "CT-RATE mean rank": fmt(t2i.get("MeanR_ci")) if t2i else "NA",
                "hospital loc. MAE mm": fmt(paper.get("hospital", {}).get("localization", {}).get("model", {})
                                            .get("mae_mm_ci")),
                "protocol": f"paper: mean7 prompts, {ct.get('zero_shot', {}).get('image_head', 'image copy head')}; "
                            "CT-RATE 18 labels first_all; Rad-ChestCT 16 classes; t2i dup_all pool, exact pair; "
                            "sample bootstrap"}
    ct, rc, hosp = m.get("ct_rate", {}), m.get("rad_chestct", {}), m.get("hospital", {})
    t2i = ct.get("retrieval", {}).get("t2i_scans", {})
    return {"CT-RATE AUC": fmt(ct.get("zero_shot", {}).get(prompt_set, {}).get("macro_auc"), 3),
            "Rad-ChestCT AUC": fmt(rc.get("zero_shot", {}).get(prompt_set, {}).get("macro_auc"), 3),
            "CT-RATE R@10 (pool)": (f"{fmt(t2i.get('R@10'))} (n={t2i['pool']})" if t2i else "NA"),
            "CT-RATE mean rank": fmt(t2i.get("mean_rank")) if t2i else "NA",
            "hospital loc. MAE mm": fmt(hosp.get("localization", {}).get("model", {}).get("mae_mm")),
            "protocol": f"ctvlp: {prompt_set} prompts; CT-RATE 18 labels; Rad-ChestCT 16 classes; scan pool; "
                        "patient bootstrap"}


def main_table(metrics: dict[str, dict], prompt_set: str, protocol: str = "ctvlp") -> pd.DataFrame:
    """Our runs (demo or real data) beside the peers' published numbers, each with its protocol."""
    rows = []
    for run, m in metrics.items():
        rows.append({"model": run, "source": "this run", **_main_cells(m, prompt_set, protocol)})
    for peer in reported_results()["peers"]:
        rows.append({"model": peer["model"], "source": "reported",
                     "CT-RATE AUC": _num(peer.get("ctrate_auc"), 100), "Rad-ChestCT AUC": _num(peer.get("radchest_auc"), 100),
                     "CT-RATE R@10 (pool)": (f"{peer['ctrate_r10']:.1f} (n={peer['ctrate_pool']})"
                                             if peer.get("ctrate_r10") is not None else "NA"),
                     "CT-RATE mean rank": "NA",
                     "hospital loc. MAE mm": _num(peer.get("loc_mae_mm"), 1, 1),
                     "protocol": peer.get("protocol", "as published")})
    return pd.DataFrame(rows)


def _num(value, divisor: float, digits: int = 3) -> str:
    return "NA" if value is None else f"{value / divisor:.{digits}f}"


def ablation_table(metrics: dict[str, dict], comparisons: dict[str, dict], reference: str,
                   prompt_set: str) -> pd.DataFrame:
    """Reference run and each ablation, with paired-bootstrap differences (ablation - reference)."""
    rows = []
    for run, m in metrics.items():
        hosp = m.get("hospital", {})
        pool_key = "t2i_scans"
        retr = hosp.get("retrieval", {}).get(pool_key, {})
        diff = comparisons.get(run, {})
        ref = run == reference
        rows.append({"run": run,
                     f"mean rank (pool {retr.get('pool', 'NA')})": fmt(retr.get("mean_rank")),
                     "Δ mean rank": "reference" if ref else fmt_diff(diff.get(f"{pool_key}_mean_rank")),
                     "R@1 %": fmt(retr.get("R@1")),
                     "Δ R@1": "reference" if ref else fmt_diff(diff.get(f"{pool_key}_R@1")),
                     "AUC": fmt(hosp.get("zero_shot", {}).get(prompt_set, {}).get("macro_auc"), 3),
                     "Δ AUC": "reference" if ref else fmt_diff(diff.get(f"macro_auc_{prompt_set}"), 3),
                     "loc. MAE mm": fmt(hosp.get("localization", {}).get("model", {}).get("mae_mm")),
                     "Δ MAE mm": "reference" if ref else fmt_diff(diff.get("loc_mae_mm"))})
    return pd.DataFrame(rows)


def per_label_table(metrics: dict[str, dict], dataset: str, prompt_set: str) -> pd.DataFrame:
    runs = list(metrics)
    labels: list[str] = []
    for m in metrics.values():
        for name in m.get(dataset, {}).get("zero_shot", {}).get(prompt_set, {}).get("per_label", {}):
            if name not in labels:
                labels.append(name)
    rows = []
    for name in labels:
        row = {"label": name}
        for run in runs:
            entry = metrics[run].get(dataset, {}).get("zero_shot", {}).get(prompt_set, {}).get("per_label", {}).get(name)
            row[run] = "NA" if entry is None else (fmt(entry["auc"], 3) if entry["auc"] else entry.get("reason", "NA"))
        first = metrics[runs[0]].get(dataset, {}).get("zero_shot", {}).get(prompt_set, {}).get("per_label", {}).get(name, {})
        row["positives/negatives"] = f"{first.get('n_pos', 0)}/{first.get('n_neg', 0)}"
        rows.append(row)
    return pd.DataFrame(rows)


def localization_table(metrics: dict[str, dict]) -> pd.DataFrame:
    rows = []
    baselines_done = False
    for run, m in metrics.items():
        loc = m.get("hospital", {}).get("localization")
        if not loc:
            continue
        entries = [(run, loc["model"])]
        if not baselines_done:
            entries += [("middle bin (baseline)", loc["middle_bin"]), ("random bin (baseline)", loc["random_bin"])]
            baselines_done = True
        for name, e in entries:
            rows.append({"method": name, "MAE mm": fmt(e["mae_mm"]), "median mm": f"{e['median_mm']:.1f}",
                         "within 1 bin %": fmt(e["within_1_bin"]), "within 2 bins %": fmt(e["within_2_bins"]),
                         "snippets": loc["n_snippets"], "bin mm": f"{loc['bin_mm']:.0f}"})
    return pd.DataFrame(rows)


# ---- the paper's tables (protocol "paper", RadFinder's definitions) ---------------------------------------------
PAPER_TABLES = ("paper_results", "paper_retrieval", "paper_zero_shot", "paper_v2v", "paper_merlin",
                "paper_localization", "paper_comparison")


def _pct(entry, digits: int = 1) -> str:
    return fmt(entry, digits)


def _largest_pool(metrics: dict[str, dict]) -> int | None:
    sizes = set()
    for m in metrics.values():
        for variant in m.get("paper", {}).get("merlin", {}).get("pool_retrieval", {}).values():
            if isinstance(variant, dict):
                sizes |= {int(k.split("_")[0][4:]) for k in variant if k.startswith("pool")}
    return max(sizes) if sizes else None


def paper_results_table(metrics: dict[str, dict]) -> pd.DataFrame:
    """The paper's headline columns in its order, our runs beside the published numbers (marked reported)."""
    pool = _largest_pool(metrics) or 128
    cols = ["CT-RATE t2i R@10 (dup_all)", "V2V MAP@5", "CT-RATE AUC (mean7)", "Rad-ChestCT AUC (16)",
            f"Merlin R@1 findings (pool {pool})", f"Merlin R@1 impressions (pool {pool})", "hospital loc. MAE mm"]
    rows = []
    for run, m in metrics.items():
        paper = m.get("paper", {})
        ct, merlin = paper.get("ct_rate", {}), paper.get("merlin", {}).get("pool_retrieval", {})
        auc = lambda e: fmt(e, 1, 100.0)  # noqa: E731  (percent, as the paper prints AUCs)
        cells = [_pct(ct.get("retrieval", {}).get("dup_all", {}).get("R@10_ci")),
                 _pct(ct.get("v2v", {}).get("MAP@5")),
                 auc(ct.get("zero_shot", {}).get("mean_auc")),
                 auc(paper.get("rad_chestct", {}).get("zero_shot", {}).get("mean_auc")),
                 _pct(merlin.get("findings", {}).get(f"pool{pool}_R@1")),
                 _pct(merlin.get("impressions", {}).get(f"pool{pool}_R@1")),
                 fmt(paper.get("hospital", {}).get("localization", {}).get("model", {}).get("mae_mm_ci"))]
        rows.append({"model": run, "source": "this run", **dict(zip(cols, cells))})
    for model, published in published_by_model().items():  # the published numbers (reported_results.yaml)
        r1 = published.get("merlin_pool128_r1")
        merlin_cell = "NA" if r1 is None else f"{r1:.1f} (variant not stated)"
        cells = [_num(published.get("ctrate_t2i_r10"), 1, 1), _num(published.get("ctrate_v2v_map5"), 1, 1),
                 _num(published.get("ctrate_zero_shot_auc"), 1, 1), _num(published.get("radchest_zero_shot_auc"), 1, 1),
                 merlin_cell if pool == 128 else "NA (pool 128)", merlin_cell if pool == 128 else "NA (pool 128)",
                 _num(published.get("hospital_localization_mae"), 1, 1)]
        rows.append({"model": model, "source": "reported", **dict(zip(cols, cells))})
    return pd.DataFrame(rows, columns=["model", "source", *cols])


def paper_retrieval_table(metrics: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for run, m in metrics.items():
        for pool, e in m.get("paper", {}).get("ct_rate", {}).get("retrieval", {}).items():
            if "R@1" not in e:
                rows.append({"run": run, "pool": pool, "n": e.get("n", 0), "R@1": "NA", "R@5": "NA", "R@10": "NA",
                             "R@50": "NA", "R@100": "NA", "MedR": "NA", "MeanR": "NA"})
                continue
            rows.append({"run": run, "pool": pool, "n": e["n"],
                         **{f"R@{k}": fmt(e.get(f"R@{k}_ci")) for k in (1, 5, 10, 50, 100)},
                         "MedR": f"{e['MedR']:.0f}", "MeanR": fmt(e.get("MeanR_ci"))})
    return pd.DataFrame(rows)


def paper_zero_shot_table(metrics: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for run, m in metrics.items():
        for dataset in ("ct_rate", "rad_chestct"):
            zs = m.get("paper", {}).get(dataset, {}).get("zero_shot")
            if zs is None:
                continue
            scored = zs.get("mean_auc") is not None
            rows.append({"run": run, "dataset": dataset, "volumes": zs.get("n", "NA"),
                         "classes scored": f"{zs.get('classes_scored', 0)}/{zs.get('classes', 0)}" if scored else "NA",
                         "mean AUC %": fmt(zs.get("mean_auc"), 1, 100.0),
                         **{f"mean {k.replace('_', ' ')}": (f"{zs[f'mean_{k}'] * 100:.1f}" if scored else "NA")
                            for k in ("sensitivity", "specificity", "precision", "f1_weighted", "balanced_accuracy")},
                         "image head": zs.get("image_head", "NA"), "note": zs.get("na", "")})
    return pd.DataFrame(rows)


def paper_v2v_table(metrics: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for run, m in metrics.items():
        v = m.get("paper", {}).get("ct_rate", {}).get("v2v")
        if v is None:
            continue
        for variant, prefix in (("RadFinder", "MAP"), ("SPECTRE's variant", "spectre_MAP")):
            rows.append({"run": run, "definition": variant, "abnormal volumes": v.get("n_abnormal", 0),
                         **{f"MAP@{k}": fmt(v.get(f"{prefix}@{k}")) for k in (5, 10, 50)}})
    return pd.DataFrame(rows)


def paper_merlin_table(metrics: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for run, m in metrics.items():
        pr = m.get("paper", {}).get("merlin", {}).get("pool_retrieval")
        if not pr:
            continue
        for variant in ("findings", "impressions", "full"):
            entry = pr.get(variant, {})
            keys = [k for k in entry if k.startswith("pool")]
            if not keys:
                rows.append({"run": run, "query text": variant, "metric": "all", "value": entry.get("na", "NA")})
            for k in keys:
                e = entry[k]
                rows.append({"run": run, "query text": variant, "metric": k.replace("_", " "),
                             "value": fmt(e) if e.get("value") is not None else f"NA ({e.get('na', '')})"})
    return pd.DataFrame(rows)


def paper_localization_table(metrics: dict[str, dict]) -> pd.DataFrame:
    rows = []
    baselines = False
    for run, m in metrics.items():
        loc = m.get("paper", {}).get("hospital", {}).get("localization")
        if not loc:
            continue
        entries = [(run, loc["model"])]
        if not baselines:
            entries += [("middle bin (baseline)", loc["middle"]), ("random bin, seeded draws (baseline)",
                                                                    loc["random_draws"]),
                        ("random bin, expectation (baseline)", loc["random_expected"])]
            baselines = True
        for name, e in entries:
            rows.append({"method": name, "exact %": fmt(e.get("exact_ci", e.get("exact"))),
                         "within 1 bin %": fmt(e.get("within_1_bin_ci", e.get("within_1_bin"))),
                         "within 2 bins %": fmt(e.get("within_2_bins_ci", e.get("within_2_bins"))),
                         "MAE mm": fmt(e.get("mae_mm_ci", e.get("mae_mm"))), "median mm": fmt(e.get("median_mm")),
                         "snippets": loc["n_snippets"], "bin mm": f"{loc['bin_mm']:.0f}"})
    return pd.DataFrame(rows)


def _paper_caption(title: str, metrics: dict[str, dict], *notes: str) -> str:
    boot = next((m["paper"]["bootstrap"] for m in metrics.values() if "paper" in m), None)
    boot_text = (f"{boot['ci']:.0f} % CI: percentile bootstrap over samples, {boot['resamples']} resamples, seed "
                 f"{boot['seed']}" if boot else "no bootstrap")
    differences = next((m["paper"]["differences"] for m in metrics.values() if "paper" in m), [])
    return (f"{title} Protocol: paper ({PAPER_NOTES['source']}). " + " ".join(f"{n}." for n in notes)
            + f" {boot_text}. Differences from the authors' code: " + "; ".join(differences) + ".")


def write_paper_tables(metrics: dict[str, dict], out_dir: Path) -> list[Path]:
    """``paper_*.md|tex``: every number made by the paper's protocol, named in the caption."""
    n = PAPER_NOTES
    written = []
    written += write_table(paper_results_table(metrics), _paper_caption(
        "The paper's headline columns in its order, percent (MAE in mm); rows marked reported are the published "
        "numbers, not recomputed.", metrics, f"CT-RATE t2i: {n['ctrate_dup_all']}", f"V2V: {n['v2v']}",
        f"Zero-shot: {n['zero_shot']}", f"Merlin: {n['merlin_pool']}", f"Localization: {n['localization']}"),
        out_dir, "paper_results")
    written += write_table(paper_retrieval_table(metrics), _paper_caption(
        "CT-RATE validation, text-to-image retrieval.", metrics, f"dup_all: {n['ctrate_dup_all']}",
        f"first_all: {n['ctrate_first_all']}", n["retrieval_metrics"]), out_dir, "paper_retrieval")
    written += write_table(paper_zero_shot_table(metrics), _paper_caption(
        "Zero-shot classification.", metrics, n["zero_shot"]), out_dir, "paper_zero_shot")
    written += write_table(paper_v2v_table(metrics), _paper_caption(
        "CT-RATE volume-to-volume retrieval, MAP@k in percent.", metrics, f"RadFinder: {n['v2v']}",
        f"SPECTRE's variant: {n['v2v_spectre']}"), out_dir, "paper_v2v")
    written += write_table(paper_merlin_table(metrics), _paper_caption(
        "Merlin pool retrieval, recall in percent; CI = 2.5/97.5 percentiles of the repeats (not the sample "
        "bootstrap).", metrics, n["merlin_pool"]), out_dir, "paper_merlin")
    written += write_table(paper_localization_table(metrics), _paper_caption(
        "Snippet localization on held-out hospital scans.", metrics, n["localization"]), out_dir,
        "paper_localization")
    return written


def write_all_tables(metrics: dict[str, dict], comparisons: dict[str, dict], reference: str, out_dir: Path,
                     prompt_set: str = "ensemble", ci: float = 95.0, resamples: int = 1000,
                     protocol: str = "ctvlp", comparison_runs: list[str] | None = None) -> list[Path]:
    """Our tables (protocol ctvlp, patient bootstrap; the main table follows ``protocol``), the paper's, and the
    comparison with the published numbers (``comparison_runs``: default the reference run)."""
    boot = f"{ci:.0f} % CI: percentile bootstrap over patients, {resamples} resamples"
    main_notes = (f"Protocol: paper ({PAPER_NOTES['source']}): {PAPER_NOTES['zero_shot']}; "
                  f"{PAPER_NOTES['ctrate_dup_all']}; 95 % CI over samples" if protocol == "paper" else
                  f"Protocol: ctvlp. {boot}. {PROTOCOL_NOTES['zero_shot']}")
    written = []
    written += write_table(main_table(metrics, prompt_set, protocol),
                           f"Main results. {main_notes}. Reported rows are copied from the "
                           f"peers' papers with their own protocols.", out_dir, "main_results")
    written += write_table(ablation_table(metrics, comparisons, reference, prompt_set),
                           f"Protocol: ctvlp. Ablations on the held-out hospital split, differences ablation - "
                           f"{reference} with paired "
                           f"{boot}; 'within CI' means the interval contains 0.", out_dir, "ablations")
    for dataset in ("ct_rate", "hospital", "rad_chestct"):
        df = per_label_table(metrics, dataset, prompt_set)
        if len(df):
            written += write_table(df, f"Protocol: ctvlp. Per-label zero-shot AUC on {dataset} ({prompt_set} "
                                       f"prompts), {boot}. "
                                       f"NA: the label has no positive or no negative in this set.",
                                   out_dir, f"per_label_auc_{dataset}")
    written += write_table(localization_table(metrics),
                           f"Protocol: ctvlp. Snippet localization on held-out hospital scans. "
                           f"{PROTOCOL_NOTES['localization']}; "
                           f"{boot}.", out_dir, "localization")
    written += write_paper_tables(metrics, out_dir)
    written += write_table(comparison_table(metrics, comparison_runs or [reference]), comparison_caption(metrics),
                           out_dir, "paper_comparison")
    return written
