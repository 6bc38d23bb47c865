"""Figures from results only (seaborn/matplotlib, PNG and PDF, readable in black and white:
runs differ by marker and line style, not only by colour).

Every text drawn (report snippets, label and run names, the CLI's sentence) is drawn as plain text: each
figure is made with matplotlib's math text and TeX off (:func:`plain_text`), so a ``$`` in a report (a dollar
amount, a LaTeX-ish note) is a character, not a parse error that fails rule ``figures`` and loses every figure.
"""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

# matplotlib reads these when a text object is made and when it is drawn: both happen inside plain_text.
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}


def plain_text(draw):
    """Make a figure with every text as plain text (no math text, no TeX), whatever the caller's rcParams."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with plt.rc_context(PLAIN_TEXT):
            return draw(*args, **kwargs)

    return wrapper


MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINES = ("-", "--", ":", "-.", (0, (3, 1, 1, 1)), (0, (5, 2)), (0, (1, 2)))


def axial_view(volume: np.ndarray, z: int) -> np.ndarray:
    """Axial slice of a RAS (x, y, z) array in radiological display: anterior up, patient's right on the left."""
    return np.asarray(volume[::-1, ::-1, z], dtype=np.float32).T


def _save(fig: plt.Figure, out_dir: Path, name: str, tight: bool = True) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    if tight:
        fig.tight_layout()
    fig.savefig(paths[0], dpi=150, metadata={"Software": "ctvlp"})
    fig.savefig(paths[1], metadata={"Creator": "ctvlp", "Producer": "ctvlp"})
    plt.close(fig)
    return paths


@plain_text
def per_label_auc(metrics: dict[str, dict], dataset: str, prompt_set: str, out_dir: Path) -> list[Path]:
    """Per-label AUC with 95 % CIs, one marker per run; undefined labels are listed, not hidden."""
    sns.set_theme(style="whitegrid", context="paper")
    labels = []
    for m in metrics.values():
        for name in m.get(dataset, {}).get("zero_shot", {}).get(prompt_set, {}).get("per_label", {}):
            labels.append(name) if name not in labels else None
    fig, ax = plt.subplots(figsize=(7, 0.32 * max(len(labels), 4) + 1.2))
    na = set()
    for r, (run, m) in enumerate(metrics.items()):
        per = m.get(dataset, {}).get("zero_shot", {}).get(prompt_set, {}).get("per_label", {})
        legend = run
        for i, name in enumerate(labels):
            e = per.get(name, {}).get("auc")
            if not e:
                na.add(name)
                continue
            y = i + (r - (len(metrics) - 1) / 2) * 0.15
            ax.errorbar(e["value"], y, xerr=[[e["value"] - e["ci_low"]], [e["ci_high"] - e["value"]]],
                        fmt=MARKERS[r % len(MARKERS)], color=f"{0.15 + 0.5 * r / max(len(metrics), 1):.2f}",
                        capsize=2, label=legend)
            legend = None
    ax.axvline(0.5, color="k", lw=0.8, ls=":")
    scored = {n for m in metrics.values()
              for n, e in m.get(dataset, {}).get("zero_shot", {}).get(prompt_set, {}).get("per_label", {}).items()
              if e.get("auc")}
    ax.set_yticks(range(len(labels)), [n if n in scored else f"{n} (NA)" for n in labels])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("AUC (95 % CI, patient bootstrap)")
    ax.set_title(f"Zero-shot AUC per label: {dataset}, {prompt_set} prompts")
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, out_dir, f"per_label_auc_{dataset}")


@plain_text
def recall_curves(metrics: dict[str, dict], dataset: str, key: str, out_dir: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    pool = None
    for r, (run, m) in enumerate(metrics.items()):
        entry = m.get(dataset, {}).get("retrieval", {}).get(key)
        if not entry:
            continue
        pool = entry["pool"]
        ks = np.arange(1, pool + 1)
        ax.plot(ks, entry["recall_curve"], ls=LINES[r % len(LINES)], marker=MARKERS[r % len(MARKERS)],
                markevery=max(1, pool // 8), color="k", lw=1, ms=4, label=run)
    if pool:
        ax.plot(np.arange(1, pool + 1), np.arange(1, pool + 1) / pool * 100, color="0.6", lw=0.8, label="chance")
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k (%)")
    ax.set_title(f"{dataset} {key.replace('_', ' ')} (pool {pool})")
    ax.legend(fontsize=7)
    return _save(fig, out_dir, f"recall_at_k_{dataset}_{key}")


@plain_text
def localization_errors(metrics: dict[str, dict], out_dir: Path) -> list[Path]:
    """Error distributions of every run against the middle-bin and random-bin baselines."""
    rows = []
    for run, m in metrics.items():
        loc = m.get("hospital", {}).get("localization")
        if not loc:
            continue
        rows += [{"method": run, "error (mm)": e} for e in loc["model"]["errors_mm"]]
        if not any(r["method"] == "middle bin" for r in rows):
            rows += [{"method": "middle bin", "error (mm)": e} for e in loc["middle_bin"]["errors_mm"]]
            rows += [{"method": "random bin (seeded draws)", "error (mm)": e} for e in loc["random_bin"]["errors_mm"]]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if rows:
        df = pd.DataFrame(rows)
        sns.boxplot(data=df, x="error (mm)", y="method", color="white", linecolor="k", ax=ax, showfliers=False)
        sns.stripplot(data=df, x="error (mm)", y="method", color="k", size=3, alpha=0.6, ax=ax)
    ax.set_title("Snippet localization error, held-out hospital scans")
    return _save(fig, out_dir, "localization_errors")


@plain_text
def training_curves(logs: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    losses = ("contrastive", "prompts", "localization")
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for r, (run, log) in enumerate(logs.items()):
        for ax, name in zip(axes, losses):
            if name in log and log[name].notna().any():
                ax.plot(log["step"], log[name], ls=LINES[r % len(LINES)], color="k", lw=1, label=run)
    for ax, name in zip(axes, losses):
        ax.set_title(f"{name} loss")
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    return _save(fig, out_dir, "training_curves")


@plain_text
def qualitative_panel(examples: list[dict], bin_voxels: int, spacing_z: float, title: str,
                      out_dir: Path, name: str = "qualitative") -> list[Path]:
    """One row per example: the axial slice at the referenced and at the predicted depth, and the
    similarity profile along z. Each example has ``volume`` (cached RAS x, y, z), ``true_bin``,
    ``pred_bin``, ``profile`` (cos per bin) and ``label`` (pseudonymous id and snippet)."""
    rows = max(len(examples), 1)
    fig, axes = plt.subplots(rows, 3, figsize=(10, 3.3 * rows), gridspec_kw={"width_ratios": [1, 1, 1]},
                             squeeze=False, layout="constrained")
    for row, ex in zip(axes, examples):
        vol = ex["volume"]
        for ax, b, kind in ((row[0], ex["true_bin"], "referenced"), (row[1], ex["pred_bin"], "predicted")):
            z = min(int((b + 0.5) * bin_voxels), vol.shape[2] - 1)
            ax.imshow(axial_view(vol, z), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{kind}: bin {b}, z = {(z + 0.5) * spacing_z:.0f} mm", fontsize=8)
            ax.axis("off")
        depth_mm = (np.arange(len(ex["profile"])) + 0.5) * bin_voxels * spacing_z
        row[2].plot(ex["profile"], depth_mm, color="k", marker="o", ms=3)
        row[2].axhline(depth_mm[ex["true_bin"]], color="k", ls="--", lw=1, label="referenced")
        row[2].axhline(depth_mm[ex["pred_bin"]], color="0.5", ls=":", lw=1.5, label="predicted")
        row[2].set_xlabel("cos(snippet, depth bin)", fontsize=8)
        row[2].set_ylabel("depth in volume (mm, feet to head)", fontsize=8)
        row[2].legend(fontsize=7)
        row[2].set_title(textwrap.fill(ex["label"], 48), fontsize=7)
    if not examples:
        for ax in axes[0]:
            ax.axis("off")
        axes[0][1].text(0.5, 0.5, "no held-out snippet to show", ha="center")
    fig.suptitle(title, fontsize=9)
    return _save(fig, out_dir, name, tight=False)


@plain_text
def localize_figure(data: np.ndarray, result: dict, bin_voxels: int, spacing_z: float, text: str,
                    out_path: Path) -> Path:
    """``ctvlp localize --figure``: the axial slice at the predicted depth beside the profile along z."""
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.4), gridspec_kw={"width_ratios": [1, 1.1]})
    z = min(int((result["bin"] + 0.5) * bin_voxels), data.shape[2] - 1)
    axes[0].imshow(axial_view(data, z), cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"predicted bin {result['bin']}: z = {result['z_mm']:.0f} mm", fontsize=8)
    axes[0].axis("off")
    profile = np.asarray(result["profile"])
    axes[1].plot(profile, np.arange(len(profile)), color="k", marker="o", ms=3)
    axes[1].axhline(result["bin"], color="0.4", ls=":", lw=1.5)
    axes[1].set_xlabel("cos(sentence, depth bin)")
    axes[1].set_ylabel(f"depth bin ({bin_voxels * spacing_z:.0f} mm, feet to head)")
    fig.suptitle(text if len(text) < 90 else text[:87] + "...", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=150)
    plt.close(fig)
    return out_path
