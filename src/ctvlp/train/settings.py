"""The ``train:`` section of the config as typed settings, over the schema's defaults.

The schema (``ctvlp/resources/config.schema.yaml``: package data, so that an installed wheel such as the GPU
image's has it; ``workflow/schemas/config.schema.yaml`` links to it) is the one place a default is written: the
workflow's validation fills it into the config, and a config built by hand (tests, notebooks, ``ctvlp.train.run``)
gets the same value here. No default is repeated in code; a required key that is missing is a
ConfigError naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctvlp.core.config import ConfigError
from ctvlp.core.schema import SCHEMA_FILE, schema_defaults  # noqa: F401 (the schema lives in core; re-exported)


class Section(dict):
    """A config section over its schema defaults; a missing required key names itself."""

    def __init__(self, config: dict, name: str):
        super().__init__({**schema_defaults(name), **(config.get(name) or {})})
        self.name = name

    def __missing__(self, key: str):
        raise ConfigError(f"config key '{self.name}.{key}' is missing (the schema gives it no default)")


def _float_or_none(value) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    micro_batch: int
    prompt_batch: int
    lr: float
    scale_lr: float
    window_lr: float | None
    weight_decay: float
    betas: tuple[float, float]
    warmup_epochs: float
    grad_clip: float
    checkpoint_every: int
    keep_checkpoints: int
    seed: int
    loss: str
    w_contrastive: float
    w_prompts: float
    w_localization: float
    pos_weight_cap: float
    prompt_scale: float | None
    prompt_sampling: str
    prompt_groups: dict
    loc_temperature: float
    loc_sigma_bins: float
    bf16: bool
    train_datasets: tuple[str, ...]
    ctrate_sampling: str
    text_checkpointing: bool
    loader_workers: int
    prefetch: int

    @classmethod
    def from_config(cls, config: dict) -> "TrainSettings":
        t = Section(config, "train")
        w = t["weights"]
        return cls(epochs=t["epochs"], batch_size=t["batch_size"], micro_batch=t["micro_batch"],
                   prompt_batch=int(t["prompt_batch"]), lr=float(t["lr"]), scale_lr=float(t["scale_lr"]),
                   window_lr=_float_or_none(t["window_lr"]), weight_decay=float(t["weight_decay"]),
                   betas=tuple(t["betas"]), warmup_epochs=float(t["warmup_epochs"]), grad_clip=float(t["grad_clip"]),
                   checkpoint_every=t["checkpoint_every"], keep_checkpoints=int(t["keep_checkpoints"]),
                   seed=config["seed"], loss=t["loss"], w_contrastive=w["contrastive"], w_prompts=w["prompts"],
                   w_localization=w["localization"], pos_weight_cap=t["prompt_pos_weight_cap"],
                   prompt_scale=_float_or_none(t["prompt_scale"]), prompt_sampling=t["prompt_sampling"],
                   prompt_groups=dict(t["prompt_groups"]), loc_temperature=t["loc_temperature"],
                   loc_sigma_bins=t["loc_sigma_bins"], bf16=t["bf16"], train_datasets=tuple(t["datasets"]),
                   ctrate_sampling=t["ctrate_sampling"], text_checkpointing=bool(t["text_grad_checkpointing"]),
                   loader_workers=int(t["loader_workers"]), prefetch=int(t["prefetch"]))

    @property
    def loss_weights(self) -> dict[str, float]:
        return {"contrastive": self.w_contrastive, "prompts": self.w_prompts, "localization": self.w_localization}
