"""A trained run applied to new data: single scans with the workflow's own code path (``scan``), and the
embeddings and quick metrics that training's dev pass and the evaluation share (``embedding``).

``ctvlp.inference`` was one module before issue 28; its public names stay importable from here. They load on
first use: training and evaluation import ``ctvlp.inference.embedding``, which must not pull in the scan
readers and the text label set (the training image's environment is computed from what its rules import).
"""

__all__ = ["CheckpointError", "ScanError", "ScanModel", "read_scan", "sniff"]


def __getattr__(name: str):
    if name in __all__:
        from ctvlp.inference import scan

        return getattr(scan, name)
    raise AttributeError(f"module 'ctvlp.inference' has no attribute {name!r}")
