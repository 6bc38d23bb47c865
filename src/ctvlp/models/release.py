"""Released models: RadFinder's published Hugging Face folder loaded with the authors' interface
(``load_release``, implemented in ``ctvlp.models.radfinder_release``), and the manifest of a converted
``model.weights_dir`` folder (``ctvlp.models.weights_dir``, torch-free, re-exported here)."""

from __future__ import annotations

from ctvlp.models.radfinder_release import load_release
from ctvlp.models.weights_dir import MANIFEST, FORMAT, architecture, model_config_problems, weights_provenance

__all__ = ["load_release", "MANIFEST", "FORMAT", "architecture", "model_config_problems", "weights_provenance"]
