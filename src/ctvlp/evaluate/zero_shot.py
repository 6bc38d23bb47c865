"""Texts the paper's protocols embed: the mean7 zero-shot prompts and the Merlin pool-retrieval variants.

numpy only: the embed step passes its encoder as a function, so the same texts and the same averaging serve
any model (the lead wires ``mean7_embeddings`` into the embed step; see ``ctvlp.evaluate.paper``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import resources

import numpy as np
import yaml

from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.core.metrics import mean7_prompt_embedding


def mean7_templates() -> list[tuple[str, str]]:
    """The 7 (positive, negative) templates, verbatim (resources/mean7_templates.yaml)."""
    data = yaml.safe_load(resources.files("ctvlp.resources").joinpath("mean7_templates.yaml").read_text())
    return [(p, n) for p, n in data["templates"]]


def mean7_prompts(labels: Sequence[str] = CTRATE_LABELS) -> list[dict[str, list[list[str]]]]:
    """One prompt set per template, in the layout ``CTVLPModel.encode_prompts`` takes (one prompt per label)."""
    return [{"positive": [[pos.format(a=label)] for label in labels],
             "negative": [[neg.format(a=label)] for label in labels]} for pos, neg in mean7_templates()]


def mean7_embeddings(encode: Callable[[dict], tuple[np.ndarray, np.ndarray]],
                     labels: Sequence[str] = CTRATE_LABELS) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) prompt embeddings (L, E): ``encode`` maps one template's prompt set to its
    (L, E) positive and negative embeddings through the main text head; each template is normalised,
    the 7 are averaged and the mean normalised again."""
    pos, neg = zip(*(encode(prompts) for prompts in mean7_prompts(labels)))
    return mean7_prompt_embedding(np.stack(pos)), mean7_prompt_embedding(np.stack(neg))


def pool_text_variants(findings: str, impressions: str) -> dict[str, str]:
    """RadFinder's pool-retrieval text per variant: ``Findings: {F}\n`` with every "Impressions" /
    "impressions" deleted, ``Impressions: {I}\n``, and the two concatenated; an empty section gives no
    line, and an empty variant is encoded as a single space (as RadFinder's encoder does)."""
    f, i = (findings or "").strip(), (impressions or "").strip()
    find = f"Findings: {f}\n".replace("Impressions", "").replace("impressions", "") if f else ""
    impr = f"Impressions: {i}\n" if i else ""
    return {"findings": find or " ", "impressions": impr or " ", "full": (find + impr) or " "}
