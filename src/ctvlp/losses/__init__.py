"""The three objectives (SigLIP or CLIP, disease prompts, localization), each a small function."""
from ctvlp.losses.contrastive import LogitScale, clip_loss, siglip_loss
from ctvlp.losses.localization import localization_loss, localization_terms, smoothed_targets
from ctvlp.losses.prompts import draw_variants, prompt_logits, prompt_loss, prompt_pos_weight

__all__ = ["LogitScale", "clip_loss", "siglip_loss", "localization_loss", "localization_terms", "smoothed_targets",
           "draw_variants", "prompt_logits", "prompt_loss", "prompt_pos_weight"]
