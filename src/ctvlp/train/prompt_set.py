"""The labels and prompts the prompt loss trains on: any label set of the text stage, in groups with weights.

The prompts table (rule ``report_text``) has one row per (label, polarity, rank) and, optionally, a
``group`` column (e.g. ``ct_rate``, ``rate_chest``, ``rate_abdomen``); without it, the 18 CT-RATE
names form the group ``ct_rate`` and any other label the group ``other``. ``train.prompt_groups``
gives each group's weight (RadFinder: CT-RATE 5, RATE chest and abdomen 1); only labels of configured
groups are trained, and a configured group the prompts file lacks stops the run before training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ctvlp.core.label_set import CTRATE_LABELS


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
        if "group" not in table.columns:
            table = table.assign(group=np.where(table.label.isin(CTRATE_LABELS), "ct_rate", "other"))
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
