"""The leaves every other package may import: configuration, ids, logs, run folders, devices, state-dict I/O,
the label set and the metrics both the model side and the evaluation use. Nothing here imports another
ctvlp package."""
