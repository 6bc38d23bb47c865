"""The three objectives (SigLIP or CLIP, disease prompts, localization), each a small function."""
from ctvlp.losses.contrastive import LogitScale, clip_loss, gather_with_grad, siglip_loss
from ctvlp.losses.localization import localization_loss, smoothed_targets
from ctvlp.losses.prompts import prompt_loss, prompt_pos_weight

__all__ = ["LogitScale", "clip_loss", "gather_with_grad", "siglip_loss", "localization_loss", "smoothed_targets",
           "prompt_loss", "prompt_pos_weight"]
