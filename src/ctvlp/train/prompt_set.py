"""The labels and prompts the prompt loss trains on: any label set of the text stage, in groups with weights.

The prompts table (rule ``report_text``) has one row per (label, polarity, rank) and, optionally, a
``group`` column (e.g. ``ct_rate``, ``rate_chest``, ``rate_abdomen``); without it, the 18 CT-RATE
names form the group ``ct_rate`` and any other label the group ``other``. ``train.prompt_groups``
gives each group's weight (RadFinder: CT-RATE 5, RATE chest and abdomen 1); only labels of configured
groups are trained, and a configured group the prompts file lacks stops the run before training.

RATE's question prompts (rule ``rate_labels``: groups ``abdomen``/``chest``) join the prompt loss as the groups
``rate_abdomen``/``rate_chest`` when ``text.rate.config_dir`` is set (``training_prompts``). Without RATE labels
the rate groups of ``train.prompt_groups`` are dropped from the run's effective config (``trained_groups``: the
paper preset names them, but the authors publish no RATE label files), with one warning while the workflow parses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ctvlp.core.label_set import CTRATE_LABELS


# train.prompt_groups names -> the group of rule rate_labels' prompt table
RATE_GROUPS = {"rate_abdomen": "abdomen", "rate_chest": "chest"}
TEXT_GROUPS = ("ct_rate", "other")  # the text stage's prompts table: CT-RATE labels, any other label set


def trained_groups(groups: dict[str, float], rate_on: bool) -> tuple[dict[str, float], list[str]]:
    """(the groups a run trains, the rate groups dropped because no RATE labels are configured). An unknown
    group name raises ValueError naming the allowed ones (a typo would otherwise stop the run after its start)."""
    allowed = TEXT_GROUPS + tuple(RATE_GROUPS)
    unknown = [g for g in groups if g not in allowed]
    if unknown:
        raise ValueError(f"config key 'train.prompt_groups.{unknown[0]}': unknown group (allowed: {', '.join(allowed)})")
    dropped = [g for g in groups if g in RATE_GROUPS and not rate_on]
    return {g: float(w) for g, w in groups.items() if g not in dropped}, dropped


def training_prompts(prompts: pd.DataFrame, rate_prompts: pd.DataFrame | None = None) -> pd.DataFrame:
    """The text stage's prompts (group ``ct_rate``/``other`` unless the table names its groups) and, when RATE is
    on, rule rate_labels' question prompts as ``rate_<modality>``: one table for ``PromptSet.from_table``."""
    if "group" not in prompts.columns:
        prompts = prompts.assign(group=np.where(prompts.label.isin(CTRATE_LABELS), "ct_rate", "other"))
    if rate_prompts is None or rate_prompts.empty:
        return prompts
    names = {modality: group for group, modality in RATE_GROUPS.items()}
    rate = rate_prompts.assign(group=rate_prompts.group.map(names))
    return pd.concat([prompts, rate[list(prompts.columns)]], ignore_index=True)


def with_rate_labels(labels: pd.DataFrame, rate_labels: pd.DataFrame | None) -> pd.DataFrame:
    """The text stage's label table with RATE's question columns joined by volume (a volume without a RATE row has
    -1, unknown, for every question; one without a text-stage row has -1 for the CT-RATE labels)."""
    if rate_labels is None or rate_labels.empty:
        return labels
    questions = rate_labels.drop(columns=[c for c in ("dataset", "labeler", "labeler_version", "split")
                                          if c in rate_labels.columns])
    return labels.merge(questions, on="volume_id", how="outer")


@dataclass(frozen=True)
class PromptSet:
    names: tuple[str, ...]
    groups: tuple[str, ...]
    positive: tuple[tuple[str, ...], ...]   # V variants per label, paired with ``negative`` by rank
    negative: tuple[tuple[str, ...], ...]
    weights: np.ndarray                     # group weight of each label

    @property
    def n_variants(self) -> int:
        return len(self.positive[0])

    def texts(self) -> list[str]:
        """Every prompt once, in (label, variant, polarity) order: reshapes to (L, V, 2)."""
        return [t for pos, neg in zip(self.positive, self.negative) for p, n in zip(pos, neg) for t in (p, n)]

    @classmethod
    def from_table(cls, table: pd.DataFrame, group_weights: dict[str, float], source: str = "prompts") -> "PromptSet":
        table = training_prompts(table)
        present = set(table.group)
        for group in group_weights:
            if group not in present:
                raise ValueError(f"config key 'train.prompt_groups.{group}': the prompts file {source} has no label "
                                 f"of that group (it has: {', '.join(sorted(present))})")
        names, groups, pos, neg = [], [], [], []
        for label, rows in table[table.group.isin(list(group_weights))].groupby("label", sort=False):
            p = tuple(rows[rows.polarity == "positive"].sort_values("rank").prompt)
            n = tuple(rows[rows.polarity == "negative"].sort_values("rank").prompt)
            if not p or len(p) != len(n):
                raise ValueError(f"{source}: label '{label}' has {len(p)} positive and {len(n)} negative prompts; "
                                 "the prompt loss pairs them by rank and needs equal, non-zero counts")
            names.append(label)
            groups.append(str(rows.group.iloc[0]))
            pos.append(p)
            neg.append(n)
        if len({len(p) for p in pos}) > 1:
            raise ValueError(f"{source}: labels have different numbers of prompt variants "
                             f"({sorted({len(p) for p in pos})}); random_1 draws from one common count")
        weights = np.array([float(group_weights[g]) for g in groups], dtype=np.float32)
        return cls(tuple(names), tuple(groups), tuple(pos), tuple(neg), weights)

    def label_matrix(self, samples) -> np.ndarray:
        """(N, L) labels in {1, 0, -1} of the samples for this label set (-1: unknown)."""
        index = {n: j for j, n in enumerate(CTRATE_LABELS)}
        out = np.full((len(samples), len(self.names)), -1, dtype=np.int64)
        for i, s in enumerate(samples):
            values = getattr(s, "label_values", None) or {}
            for j, name in enumerate(self.names):
                if name in values:
                    out[i, j] = values[name]
                elif name in index:
                    out[i, j] = s.labels[index[name]]
        return out


def prompt_set_from_lists(prompts: dict[str, list[list[str]]], groups: dict[str, float]) -> PromptSet:
    """The prompt set of ``prompt_lists`` (the 18 CT-RATE labels, group ``ct_rate``): tests and callers
    without a prompts table."""
    rows = [{"label": label, "polarity": pol, "rank": r, "prompt": p}
            for pol in ("positive", "negative") for label, group in zip(CTRATE_LABELS, prompts[pol])
            for r, p in enumerate(group)]
    return PromptSet.from_table(pd.DataFrame(rows), {g: w for g, w in groups.items() if g == "ct_rate"} or {"ct_rate": 1.0})


def prompt_lists(prompts_table) -> dict[str, list[list[str]]]:
    """{positive|negative: [[prompts of label 1], ...]} in CT-RATE label order (evaluation's zero-shot)."""
    out = {}
    for polarity in ("positive", "negative"):
        part = prompts_table[prompts_table.polarity == polarity]
        out[polarity] = [list(part[part.label == label].sort_values("rank").prompt) for label in CTRATE_LABELS]
    return out
