"""One log file per rule: stdout, stderr (tqdm bars included) and logging all go to it."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def logged(path: str | Path, name: str = "ctvlp") -> Iterator[logging.Logger]:
    """Redirect output of a rule's work into ``path``; exceptions are logged before they propagate."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as stream, contextlib.redirect_stdout(stream), \
            contextlib.redirect_stderr(stream):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        try:
            yield logger
        except Exception:
            logger.exception("rule failed")
            raise
        finally:
            logger.removeHandler(handler)
