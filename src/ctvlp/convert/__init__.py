"""Foreign checkpoints into the workflow's model folder: RadFinder's one-file model (``radfinder``), the check of
a loralib LoRA file's base (``loralib``) and the importer behind ``ctvlp import-weights`` (``importer``).

Only the command line uses this package; the model package reads the folder it writes (``ctvlp.models.weights``)
and never imports it. SPECTRE's own release format (patch-kernel fold, loralib key names) is converted in
``ctvlp.models.spectre``, because the public ``load_component`` needs it.
"""
