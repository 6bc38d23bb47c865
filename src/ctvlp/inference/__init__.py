"""A trained run applied to new data: single scans with the workflow's own code path (``scan``), and the
embeddings and quick metrics that training's dev pass and the evaluation share (``embedding``)."""

from ctvlp.inference.scan import CheckpointError, ScanError, ScanModel, read_scan, sniff

__all__ = ["CheckpointError", "ScanError", "ScanModel", "read_scan", "sniff"]
