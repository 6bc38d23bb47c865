"""Linear probe on the frozen window features: how much of each label the features carry at all.

Zero-shot AUC can be no better than what the window encoder's features hold. Fitting a logistic
regression on the *labels* (train + dev split) over the flattened window tokens and scoring the test
split gives that ceiling per label, so a site can check a new encoder (``model.weights_dir``)
before training anything:

    python -m ctvlp.evaluate.probe results [--dataset hospital] [--C 0.05] [--features features_random]

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


def probe_results(results: Path, dataset: str = "hospital", c: float = 0.05,
                  features: str = "features") -> pd.DataFrame:
    volumes = pd.read_parquet(results / "manifest/volumes.parquet")
    labels = pd.read_parquet(results / "text/labels.parquet")
    table = labels.merge(volumes[["volume_id", "split"]], on="volume_id")
    table = table[table.dataset == dataset].sort_values("volume_id")
    x, kept = flat_features(results / features / "volumes", list(table.volume_id))
    table = table.set_index("volume_id").loc[kept]
    y = table[list(CTRATE_LABELS)].to_numpy(dtype=int)
    train = table.split.isin(["train", "dev"]).to_numpy()
    test = (table.split == "test").to_numpy()
    return probe_labels(x[train], y[train], x[test], y[test], list(CTRATE_LABELS), c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the workflow's results folder")
    parser.add_argument("--dataset", default="hospital")
    parser.add_argument("--C", type=float, default=0.05, help="inverse L2 strength of the logistic regression")
    parser.add_argument("--features", default="features", help="feature set folder under results/")
    args = parser.parse_args()
    table = probe_results(args.results, args.dataset, args.C, args.features)
    print(table.dropna().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"macro probe AUC over {int(table.probe_auc.notna().sum())} labels: {table.probe_auc.mean():.3f}")


if __name__ == "__main__":
    main()
