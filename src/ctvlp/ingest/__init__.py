"""Ingestion: sources into one manifest, series table and QC table (``sources``), the manifest's rows and splits
(``manifest``), QC (``qc``) and the checks of the configured inputs before any job starts (``inputs``)."""

from ctvlp.ingest.sources import IngestSettings, ingest

__all__ = ["IngestSettings", "ingest"]
