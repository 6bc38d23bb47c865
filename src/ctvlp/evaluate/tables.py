"""Tables from metric JSON files only (no model, no data): Markdown and LaTeX (booktabs).

Each table carries its protocol in a caption line, and numbers taken from other papers are marked
"reported" with their protocol, never mixed silently with our own.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from ctvlp.evaluate.protocol import PROTOCOL_NOTES


def fmt(entry, digits: int = 1, scale: float = 1.0) -> str:
    """'value [low, high]' for a bootstrap entry, a plain number, or 'NA'."""
    if entry is None:
        return "NA"
    if isinstance(entry, dict):
        if entry.get("value") is None or entry["value"] != entry["value"]:
            return "NA"
        v, lo, hi = (entry[k] * scale for k in ("value", "ci_low", "ci_high"))
        return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
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
def main_table(metrics: dict[str, dict], prompt_set: str) -> pd.DataFrame:
    """Our runs (demo or real data) beside the peers' published numbers, each with its protocol."""
    rows = []
    for run, m in metrics.items():
        ct, rc, hosp = m.get("ct_rate", {}), m.get("rad_chestct", {}), m.get("hospital", {})
        t2i = ct.get("retrieval", {}).get("t2i_scans", {})
        rows.append({"model": run, "source": "this run",
                     "CT-RATE AUC": fmt(ct.get("zero_shot", {}).get(prompt_set, {}).get("macro_auc"), 3),
                     "Rad-ChestCT AUC": fmt(rc.get("zero_shot", {}).get(prompt_set, {}).get("macro_auc"), 3),
                     "CT-RATE R@10 (pool)": (f"{fmt(t2i.get('R@10'))} (n={t2i['pool']})" if t2i else "NA"),
                     "CT-RATE mean rank": fmt(t2i.get("mean_rank")) if t2i else "NA",
                     "hospital loc. MAE mm": fmt(hosp.get("localization", {}).get("model", {}).get("mae_mm")),
                     "protocol": f"{prompt_set} prompts; CT-RATE 18 labels; Rad-ChestCT 16 classes; scan pool"})
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


def write_all_tables(metrics: dict[str, dict], comparisons: dict[str, dict], reference: str, out_dir: Path,
                     prompt_set: str = "ensemble", ci: float = 95.0, resamples: int = 1000) -> list[Path]:
    boot = f"{ci:.0f} % CI: percentile bootstrap over patients, {resamples} resamples"
    written = []
    written += write_table(main_table(metrics, prompt_set),
                           f"Main results. {boot}. {PROTOCOL_NOTES['zero_shot']}. Reported rows are copied from the "
                           f"peers' papers with their own protocols.", out_dir, "main_results")
    written += write_table(ablation_table(metrics, comparisons, reference, prompt_set),
                           f"Ablations on the held-out hospital split, differences ablation - {reference} with paired "
                           f"{boot}; 'within CI' means the interval contains 0.", out_dir, "ablations")
    for dataset in ("ct_rate", "hospital", "rad_chestct"):
        df = per_label_table(metrics, dataset, prompt_set)
        if len(df):
            written += write_table(df, f"Per-label zero-shot AUC on {dataset} ({prompt_set} prompts), {boot}. "
                                       f"NA: the label has no positive or no negative in this set.",
                                   out_dir, f"per_label_auc_{dataset}")
    written += write_table(localization_table(metrics),
                           f"Snippet localization on held-out hospital scans. {PROTOCOL_NOTES['localization']}; "
                           f"{boot}.", out_dir, "localization")
    return written
