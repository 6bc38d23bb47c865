"""ctvlp: disease-aware vision-language pretraining on 3D CT, as a reproducible workflow.

The library never imports Snakemake: every stage is a plain function that the thin rule
scripts under ``workflow/scripts`` call, so the same code runs in tests, the CLI and the workflow.
"""

__version__ = "0.1.0"
