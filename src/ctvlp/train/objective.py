"""The objective of a step: the three losses of the global batch (spectre.md, RadFinder) from its embeddings,
and the gathers that make every process hold the whole batch's rows.

SigLIP (or CLIP) over all pairs whose report has > 10 tokens, the prompt loss over all samples, the
localization loss over all snippets (each process sums its own, divided by the global count). A pure
function of fixed embeddings: tests feed it tensors without a model.
"""

from __future__ import annotations

import torch

from ctvlp.losses import clip_loss, draw_variants, localization_terms, prompt_loss, prompt_pos_weight, siglip_loss
from ctvlp.train.distributed import all_sum, gather_rows
from ctvlp.train.prompt_set import PromptSet
from ctvlp.train.settings import TrainSettings

# Which embedding feeds which loss, as RadFinder: the one place to change it. Retrieval (SigLIP) takes the main
# image and text heads; the prompt loss the image copy head ("scan_prompt") against prompts through the main text
# head; localization the depth bins through the image copy head and the snippets through the text copy head.
LOSS_INPUTS = {"contrastive": ("scan", "report"), "prompts": ("scan_prompt", "prompt"),
               "localization": ("depth", "snippet")}
# Outputs with one row per sample of the global batch: gathered over processes for the batch-wide losses.
SAMPLE_ROWS = ("scan", "scan_prompt", "report")
MIN_REPORT_TOKENS = 11  # RadFinder drops reports of <= 10 tokens from the contrastive batch


def report_token_counts(text_encoder, texts: list[str]) -> list[int]:
    """Tokens of each text as the text tower reads it (truncated at its ``max_tokens``)."""
    tok = text_encoder.tokenizer
    return [len(ids) for ids in tok(texts, truncation=True, max_length=text_encoder.spec.max_tokens)["input_ids"]]


def gather_embeddings(outs: list[dict], kinds: list[str], sizes: dict[str, list[int]], direct: bool) -> dict:
    """The global batch's rows of each gathered output: this process's jobs' rows joined, then every
    process's in rank order (``sizes[kind]``: rows per process; prompts only when ``sizes`` has them).
    Gathered rows are leaves whose gradient phase two back-propagates; ``direct`` (one pass holds the whole
    batch) keeps the graph instead."""
    def joined(name: str, kind: str) -> torch.Tensor:
        local = torch.cat([o[name] for o, kd in zip(outs, kinds) if kd == kind])
        return local if direct else gather_rows(local.detach(), sizes[kind]).requires_grad_(True)

    emb = {name: joined(name, "micro") for name in SAMPLE_ROWS}
    if "prompts" in sizes:
        emb["prompt"] = joined("prompt", "prompts")
    return emb


class Objective:
    """The losses of a step, given the training set's labels, report lengths and snippet counts."""

    def __init__(self, s: TrainSettings, prompt_set: PromptSet, labels: torch.Tensor, has_text: torch.Tensor,
                 snippet_counts: list[int], device: torch.device):
        self.s, self.prompt_set, self.labels, self.has_text = s, prompt_set, labels, has_text
        self.snippet_counts, self.device = snippet_counts, device
        self.pos_weight = prompt_pos_weight(labels, s.pos_weight_cap).to(device)
        self.label_weight = torch.from_numpy(prompt_set.weights).to(device)

    @property
    def uses_prompts(self) -> bool:
        return self.s.w_prompts > 0 and len(self.prompt_set.names) > 0

    def losses(self, step: int, batch: torch.Tensor, emb: dict, local: list[tuple[dict, dict]],
               scale: torch.nn.Module) -> dict[str, torch.Tensor]:
        """``emb``: the gathered rows (``SAMPLE_ROWS``, ``prompt``); ``local``: (outputs, meta) of this process's
        micro-batches (depth bins, snippets, each snippet's owner and bin); ``scale``: the SigLIP temperature/bias."""
        s = self.s
        losses: dict[str, torch.Tensor] = {}
        img, txt = LOSS_INPUTS["contrastive"]
        keep = self.has_text[batch].to(self.device)
        if keep.any():
            contrastive = siglip_loss if s.loss == "siglip" else clip_loss
            losses["contrastive"] = contrastive(emb[img][keep], emb[txt][keep], scale)
        if "prompt" in emb:
            img, prm = LOSS_INPUTS["prompts"]
            n_labels, n_var = len(self.prompt_set.names), self.prompt_set.n_variants
            prompt_emb = emb[prm].reshape(n_labels, n_var, 2, -1)
            draw = (draw_variants(s.seed, step, len(batch), n_labels, n_var) if s.prompt_sampling == "random_1"
                    else None)
            logit_scale = scale.t.exp() if s.prompt_scale is None else s.prompt_scale
            losses["prompts"] = prompt_loss(emb[img], prompt_emb, self.labels[batch].to(self.device), self.pos_weight,
                                            self.label_weight, logit_scale, draw)
        count = sum(self.snippet_counts[int(i)] for i in batch)
        if s.w_localization > 0 and count:
            dep, snp = LOSS_INPUTS["localization"]
            total = torch.zeros((), device=self.device)
            for out, meta in local:
                if snp in out:
                    total = total + localization_terms(out[snp], out[dep][meta["owner"]], meta["bin"],
                                                       out["n_bins"][meta["owner"]], s.loc_temperature,
                                                       s.loc_sigma_bins).sum()
            losses["localization"] = total / count
            losses["loc_sum"], losses["loc_count"] = total, torch.tensor(float(count))
        return losses

    def total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        weights = self.s.loss_weights
        return sum(weights[k] * v for k, v in losses.items() if k in weights)

    def logged(self, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        """The loss values to log; localization over every process's snippets (this process's alone otherwise)."""
        logged = {k: float(v.detach()) for k, v in losses.items() if k in self.s.loss_weights}
        if "localization" in losses:
            logged["localization"] = float(all_sum(losses["loc_sum"].detach()) / losses["loc_count"])
        return logged
