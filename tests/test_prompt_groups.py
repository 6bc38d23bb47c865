"""RATE's question prompts reach the prompt loss (the paper's groups rate_chest / rate_abdomen), a group without
its labels is dropped from the run's effective config with a warning, and a misspelt group stops the workflow
before any job."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO
from ctvlp.core.config import ConfigError
from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.train.data import build_samples
from ctvlp.train.launch import check_runs, run_config
from ctvlp.train.prompt_set import PromptSet, trained_groups, training_prompts, with_rate_labels

PAPER_GROUPS = {"ct_rate": 5.0, "rate_chest": 1.0, "rate_abdomen": 1.0}


def config(rate_dir: str | None) -> dict:
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["demo"]["enabled"] = False  # the demo brings its own RATE folder
    cfg["text"]["rate"]["config_dir"] = rate_dir
    cfg["train"]["prompt_groups"] = dict(PAPER_GROUPS)
    return cfg


def prompt_rows(labels, group=None):
    return [{"label": label, "polarity": pol, "rank": r, "prompt": f"{pol} {label} {r}",
             **({"group": group} if group else {})} for label in labels for pol in ("positive", "negative")
            for r in range(2)]


def test_rate_groups_join_the_prompt_loss_with_their_labels():
    prompts = pd.DataFrame(prompt_rows(CTRATE_LABELS))
    rate = pd.DataFrame(prompt_rows(["q0001"], "abdomen") + prompt_rows(["q0227"], "chest"))
    table = training_prompts(prompts, rate)
    ps = PromptSet.from_table(table, PAPER_GROUPS)
    assert ps.names[-2:] == ("q0001", "q0227") and ps.groups[-2:] == ("rate_abdomen", "rate_chest")
    assert ps.weights[0] == 5.0 and list(ps.weights[-2:]) == [1.0, 1.0]

    labels = pd.DataFrame([{"volume_id": "a", "dataset": "ct_rate", **{n: 0 for n in CTRATE_LABELS}}])
    rate_labels = pd.DataFrame([{"volume_id": "a", "dataset": "ct_rate", "labeler": "rate", "labeler_version": "x",
                                 "q0001": 1, "q0227": 0},
                                {"volume_id": "b", "dataset": "merlin", "labeler": "rate", "labeler_version": "x",
                                 "q0001": 0, "q0227": -1}])
    volumes = pd.DataFrame([{"volume_id": v, "status": "ok", "split": "train", "dataset": "ct_rate",
                             "patient_id": v, "scan_id": v} for v in ("a", "b")])
    reports = pd.DataFrame([{"volume_id": v, "text": "t"} for v in ("a", "b")])
    features = pd.DataFrame([{"volume_id": v, "status": "ok"} for v in ("a", "b")])
    snippets = pd.DataFrame(columns=["volume_id", "snippet", "depth_bin"])
    samples = build_samples(volumes, reports, with_rate_labels(labels, rate_labels), snippets, features)
    y = ps.label_matrix(samples)
    assert list(y[0, -2:]) == [1, 0] and list(y[1, -2:]) == [0, -1]
    assert (y[0, :18] == 0).all() and (y[1, :18] == -1).all()  # b has no text-stage labels: unknown, not negative


def test_rate_groups_without_rate_labels_are_dropped_with_one_warning(caplog):
    off, on = config(None), config("/site/radfinder/configs/rate/modalities_en")
    assert run_config(off, {})["train"]["prompt_groups"] == {"ct_rate": 5.0}
    assert run_config(on, {})["train"]["prompt_groups"] == dict(sorted(PAPER_GROUPS.items()))
    with caplog.at_level(logging.WARNING, logger="ctvlp.train"):
        check_runs(off, {"full": {}, "no_loc": {"train.weights.localization": 0.0}})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "rate_chest, rate_abdomen" in warnings[0] and "text.rate.config_dir" in warnings[0]
    assert trained_groups(PAPER_GROUPS, True) == (PAPER_GROUPS, [])


def test_a_misspelt_group_stops_the_workflow_before_any_job():
    cfg = config(None)
    cfg["train"]["prompt_groups"] = {"ct_rate": 5.0, "rate_chest": 1.0}
    with pytest.raises(ConfigError, match=r"train\.prompt_groups\.ctrate': unknown group .*\(ablation run 'typo'\)"):
        check_runs(cfg, {"full": {}, "typo": {"train.prompt_groups": {"ctrate": 5.0}}})
    assert np.isclose(sum(trained_groups(cfg["train"]["prompt_groups"], False)[0].values()), 5.0)
