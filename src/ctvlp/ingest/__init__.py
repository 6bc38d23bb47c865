"""Ingestion: sources into one manifest, series table and QC table (``sources``), the manifest's rows and splits
(``manifest``), QC (``qc``) and the checks of the configured inputs before any job starts (``inputs``).

``ctvlp.ingest`` was one module before issue 28; ``ingest`` and ``IngestSettings`` stay importable from here. They
load on first use, so the Snakefile's import of ``ctvlp.ingest.inputs`` does not read the source adapters.
"""

__all__ = ["IngestSettings", "ingest"]


def __getattr__(name: str):
    if name in __all__:
        from ctvlp.ingest import sources

        return getattr(sources, name)
    raise AttributeError(f"module 'ctvlp.ingest' has no attribute {name!r}")
