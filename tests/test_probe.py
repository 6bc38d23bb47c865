"""The linear probe's cross-validation by patient (ctvlp.evaluate.probe.probe_labels_cv): a label the features
carry scores high, noise near chance, a never-present label NA, and no patient is in a fold's training and test."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import GroupKFold

from ctvlp.evaluate.probe import _fit_score, probe_labels_cv


def test_probe_cv_by_patient_finds_what_the_features_carry():
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(60), 2)  # two scans per patient
    y = np.zeros((120, 3), dtype=int)
    y[:, 0] = np.repeat(rng.integers(0, 2, 60), 2)
    y[:, 1] = rng.integers(0, 2, 120)
    y[7, 1] = -1  # unknown: left out
    x = rng.normal(size=(120, 200))
    x[:, :5] += 2.0 * y[:, :1]  # five features carry label 0
    table = probe_labels_cv(x, y, patients, ["carried", "noise", "absent"])
    auc = dict(zip(table.label, table.probe_auc))
    assert auc["carried"] > 0.9 and 0.3 < auc["noise"] < 0.7 and np.isnan(auc["absent"])
    assert table.set_index("label").loc["noise", "positives"] + table.set_index("label").loc["noise", "negatives"] == 119
    for tr, te in GroupKFold(n_splits=5).split(x, y[:, 0], patients):
        assert not set(patients[tr]) & set(patients[te])


def test_the_row_space_fit_equals_the_full_fit():
    """An L2 logistic regression fitted in the span of the training rows scores like one on all features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 300)), rng.integers(0, 2, 40)
    test = rng.normal(size=(10, 300))
    scaler = StandardScaler().fit(x)
    full = LogisticRegression(C=0.05, max_iter=5000).fit(scaler.transform(x), y).decision_function(scaler.transform(test))
    assert np.allclose(_fit_score(x, y, test, 0.05), full, atol=1e-3)
