"""Linear probe on the frozen window features: how much of each label the features carry at all.

Zero-shot AUC can be no better than what the window encoder's features hold. A logistic regression
fitted on the *labels* over the flattened window tokens gives that ceiling per label, so a site can
check a new encoder (``model.weights_dir``) before training anything, and a reader of the demo's
tables sees which findings the features resolve before judging the zero-shot numbers. The probe is
cross-validated by patient (``folds`` patient-disjoint folds over all splits of a dataset; each scan
is scored by the fold that did not see its patient; one AUC over the pooled out-of-fold scores), so
small sets still give a number:

    python -m ctvlp.evaluate.probe results [--dataset hospital] [--C 0.05] [--features features_random]
    python -m ctvlp.evaluate.probe results --table          # random vs pretrained, per label (markdown)

``--features`` names the feature set: ``features`` (the configured encoder: the self-supervised one when
``pretrain.enabled``), ``features_random`` (the random encoder of a ``random_encoder`` run) or
``features_pretrained``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.features.window import feature_file, load_features


def flat_features(feature_dir: Path, volume_ids: list[str]) -> tuple[np.ndarray, list[str]]:
    """CLS and mean tokens of every window, flattened in grid order; only volumes with the most common
    window grid are kept (a linear probe needs one input size)."""
    feats = {v: load_features(feature_file(feature_dir, v)) for v in volume_ids}
    grids = {v: tuple(f["cls"].shape[:3]) for v, f in feats.items()}
    common = Counter(grids.values()).most_common(1)[0][0]
    kept = [v for v in volume_ids if grids[v] == common]
    rows = [torch.cat([feats[v]["cls"], feats[v]["mean"]], dim=-1).flatten().numpy() for v in kept]
    return np.stack(rows), kept


def probe_labels(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                 names: list[str], c: float = 0.05) -> pd.DataFrame:
    """Per label (unknown = -1 left out): test AUC of an L2 logistic regression, or NaN when a split
    lacks a class."""
    rows = []
    for j, name in enumerate(names):
        tr, te = y_train[:, j] >= 0, y_test[:, j] >= 0
        ytr, yte = y_train[tr, j], y_test[te, j]
        auc = np.nan
        if len(set(ytr)) == 2 and len(set(yte)) == 2:
            scaler = StandardScaler().fit(x_train[tr])
            clf = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x_train[tr]), ytr)
            auc = roc_auc_score(yte, clf.predict_proba(scaler.transform(x_test[te]))[:, 1])
        rows.append({"label": name, "probe_auc": auc, "test_positives": int(yte.sum()),
                     "test_negatives": int((yte == 0).sum())})
    return pd.DataFrame(rows)


def _fit_score(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, c: float) -> np.ndarray:
    """Scores of an L2 logistic regression on standardized features. The optimum of an L2-penalised linear model
    lies in the span of its training rows, so it is fitted in those coordinates (an orthonormal basis of the
    centred training rows): the same model, with as many inputs as training scans instead of ~10^4 features."""
    scaler = StandardScaler().fit(x_train)
    a, b = scaler.transform(x_train), scaler.transform(x_test)
    _, sv, vt = np.linalg.svd(a, full_matrices=False)
    basis = vt[sv > sv.max() * 1e-8].T
    clf = LogisticRegression(C=c, max_iter=5000).fit(a @ basis, y_train)
    return clf.decision_function(b @ basis)


def probe_labels_cv(x: np.ndarray, y: np.ndarray, groups: np.ndarray, names: list[str], c: float = 0.05,
                    folds: int = 5) -> pd.DataFrame:
    """Per label (unknown = -1 left out): AUC of the pooled out-of-fold scores of an L2 logistic regression,
    folds disjoint by ``groups`` (patients); NaN when the label has no positive or no negative, or a fold's
    training part lacks a class."""
    rows = []
    for j, name in enumerate(names):
        known = y[:, j] >= 0
        xs, ys, gs = x[known], y[known, j], groups[known]
        auc, positives = np.nan, int(ys.sum())
        k = min(folds, len(set(gs)))
        if positives and (ys == 0).any() and k >= 2:
            scores = np.full(len(ys), np.nan)
            for tr, te in GroupKFold(n_splits=k).split(xs, ys, gs):
                if len(set(ys[tr])) < 2:
                    break
                scores[te] = _fit_score(xs[tr], ys[tr], xs[te], c)
            if not np.isnan(scores).any():
                auc = roc_auc_score(ys, scores)
        rows.append({"label": name, "probe_auc": auc, "positives": positives, "negatives": int((ys == 0).sum())})
    return pd.DataFrame(rows)


def probe_results(results: Path, dataset: str = "hospital", c: float = 0.05,
                  features: str = "features", folds: int = 5) -> pd.DataFrame:
    """The probe of one feature set on one dataset (all its splits, ``folds`` folds by patient)."""
    results = Path(results)
    volumes = pd.read_parquet(results / "manifest/volumes.parquet")
    labels = pd.read_parquet(results / "text/labels.parquet")
    table = labels.merge(volumes[["volume_id", "patient_id"]], on="volume_id")
    table = table[table.dataset == dataset].sort_values("volume_id")
    x, kept = flat_features(results / features / "volumes", list(table.volume_id))
    table = table.set_index("volume_id").loc[kept]
    y = table[list(CTRATE_LABELS)].to_numpy(dtype=int)
    return probe_labels_cv(x, y, table.patient_id.to_numpy(), list(CTRATE_LABELS), c, folds)


def probe_table(results: Path, feature_sets: dict[str, str], datasets: list[str], c: float = 0.05,
                folds: int = 5) -> str:
    """Markdown: per dataset, one row per label, one column per feature set (``{column name: folder}``), and
    the macro AUC over the labels with positives. NA: the label has no positive (never planted) in that set."""
    parts = [f"# Linear-probe ceiling of the window features (logistic regression, C={c:g}, {folds} folds by "
             "patient)", "",
             "What the frozen window features can resolve at all, per finding: zero-shot AUC is bounded by it. "
             "A finding at chance here cannot be learned by any training of the layers above the window encoder.",
             ""]
    labels = pd.read_parquet(Path(results) / "text/labels.parquet")
    for ds in datasets:
        if not (labels.dataset == ds).any():
            parts += [f"## {ds}", "", "No labelled volumes.", ""]
            continue
        tables = {name: probe_results(results, ds, c, fset, folds).set_index("label")
                  for name, fset in feature_sets.items()}
        first = next(iter(tables.values()))
        cols = list(tables)
        parts += [f"## {ds}", "", "| label | " + " | ".join(cols) + " | positives/negatives |",
                  "|---|" + "---|" * (len(cols) + 1)]
        for label in first.index:
            cells = ["NA: no positives" if first.loc[label, "positives"] == 0 else
                     ("NA" if np.isnan(t.loc[label, "probe_auc"]) else f"{t.loc[label, 'probe_auc']:.3f}")
                     for t in tables.values()]
            parts.append(f"| {label} | " + " | ".join(cells)
                         + f" | {first.loc[label, 'positives']}/{first.loc[label, 'negatives']} |")
        macro = [f"{t.probe_auc.mean():.3f}" for t in tables.values()]
        parts += [f"| **macro (labels with positives)** | " + " | ".join(macro) + " | |", ""]
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the workflow's results folder")
    parser.add_argument("--dataset", default="hospital")
    parser.add_argument("--C", type=float, default=0.05, help="inverse L2 strength of the logistic regression")
    parser.add_argument("--features", default="features", help="feature set folder under results/")
    parser.add_argument("--folds", type=int, default=5, help="folds by patient")
    parser.add_argument("--table", action="store_true",
                        help="markdown table of the features and features_random sets (where present)")
    args = parser.parse_args()
    if args.table:
        sets = {name: name for name in ("features", "features_random", "features_pretrained")
                if (args.results / name / "volumes").is_dir()}
        print(probe_table(args.results, sets, [args.dataset], args.C, args.folds), end="")
        return
    table = probe_results(args.results, args.dataset, args.C, args.features, args.folds)
    print(table.dropna().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"macro probe AUC over {int(table.probe_auc.notna().sum())} labels: {table.probe_auc.mean():.3f}")


if __name__ == "__main__":
    main()
