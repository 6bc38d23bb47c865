"""The run's CSV logs (``train_log.csv``, ``dev_metrics.csv``): rows appended under a fixed header, and
rows past the resumed checkpoint dropped (a killed job redoes them)."""

from __future__ import annotations

import csv
from pathlib import Path

LOG_COLUMNS = ("step", "epoch", "contrastive", "prompts", "localization", "grad_norm", "lr", "seconds")


def truncate_csv(path: Path, last_step: int) -> None:
    """Drop the rows of steps after ``last_step``."""
    if path.exists():
        rows = list(csv.DictReader(open(path, newline="")))
        kept = [r for r in rows if int(r["step"]) <= last_step]
        if len(kept) != len(rows):
            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(kept)


def append_csv(path: Path, row: dict) -> None:
    """Columns are the file's header (the train log's fixed columns when new): a step without a
    loss term (a batch with no snippets) leaves that cell empty instead of shifting the row."""
    new = not path.exists()
    if new and "grad_norm" in row:  # a train-log row: every loss column, whichever terms this step had
        fields = list(LOG_COLUMNS) + [c for c in row if c not in LOG_COLUMNS]
    elif new:
        fields = list(row)
    else:
        with open(path, newline="") as f:
            fields = next(csv.reader(f))
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="raise")
        if new:
            writer.writeheader()
        writer.writerow(row)
