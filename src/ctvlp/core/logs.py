"""One log file per rule: stdout, stderr (tqdm bars included) and logging all go to it."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path


START = "ctvlp: job started"  # the first line of every log written here
DONE = "ctvlp: job finished"  # the last line of a log whose job ended normally


def keep_unfinished(path: Path) -> Path | None:
    """Move the log of an attempt that did not finish (killed, or failed) beside the new one, as
    ``<name>.attempt-<n><suffix>`` (n = 1, 2, ...), so the rerun does not overwrite the only account of what
    happened; a finished attempt's log is simply replaced. Returns the kept file, if any."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 200))
            if f.read().rstrip().endswith(DONE.encode()):
                return None
    except FileNotFoundError:
        return None
    n = 1
    while (kept := path.with_name(f"{path.stem}.attempt-{n}{path.suffix}")).exists():
        n += 1
    path.rename(kept)
    return kept


def keep_unfinished_logs(folder: str | Path) -> list[Path]:
    """Every log under ``folder`` written by :func:`logged` whose job did not finish, kept as by
    :func:`keep_unfinished`. The workflow calls this when a run starts (``onstart``: the main process, after the
    lock, before any job; not in dry runs), because Snakemake deletes a job's log before the job runs again."""
    kept = []
    for path in sorted(Path(folder).rglob("*.log")) if Path(folder).is_dir() else []:
        if ".attempt-" in path.name:
            continue
        try:
            with open(path, "rb") as f:
                started = f.read(len(START)) == START.encode()
        except OSError:
            continue
        if started and (moved := keep_unfinished(path)) is not None:
            kept.append(moved)
    return kept


@contextlib.contextmanager
def logged(path: str | Path, name: str = "ctvlp") -> Iterator[logging.Logger]:
    """Redirect output of a rule's work into ``path``; exceptions are logged before they propagate. The log starts
    with the line ``START`` and, when the job ends normally, ends with ``DONE``; the log of an earlier attempt that
    did not finish is kept beside it (:func:`keep_unfinished`, and :func:`keep_unfinished_logs` at the start of a
    run, before Snakemake deletes it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = keep_unfinished(path)
    with open(path, "w", buffering=1) as stream, contextlib.redirect_stdout(stream), \
            contextlib.redirect_stderr(stream):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        stream.write(f"{START}\n")
        if kept is not None:
            logger.info("the log of an earlier attempt that did not finish is kept as %s", kept.name)
        try:
            yield logger
        except BaseException:  # SIGTERM from Snakemake arrives as SystemExit/KeyboardInterrupt when handled
            logger.exception("rule failed")
            raise
        else:
            stream.write(f"{DONE}\n")
        finally:
            logger.removeHandler(handler)
