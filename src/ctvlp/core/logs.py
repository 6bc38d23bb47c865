"""One log file per rule: stdout, stderr (tqdm bars included) and logging all go to it."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path


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


@contextlib.contextmanager
def logged(path: str | Path, name: str = "ctvlp") -> Iterator[logging.Logger]:
    """Redirect output of a rule's work into ``path``; exceptions are logged before they propagate. The log of an
    earlier attempt that did not finish is kept beside it (:func:`keep_unfinished`); a finished job's log ends
    with the line ``DONE``."""
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
