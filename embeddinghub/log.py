"""Logging on the standard `logging` module, logger `embeddinghub`: silent unless you configure it.

What is logged: connects (INFO), schema migrations that ran (INFO), index builds with their
duration (INFO), and every Hub/Space call slower than `SLOW_SECONDS` (WARNING, with its
duration). Turn it on with e.g. `logging.basicConfig(level=logging.INFO)`, or
`logging.getLogger("embeddinghub").setLevel(logging.INFO)` with a handler of yours.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["SLOW_SECONDS", "logger", "timed"]

logger = logging.getLogger("embeddinghub")
logger.addHandler(logging.NullHandler())  # a library stays silent until the application says

SLOW_SECONDS = 1.0  # calls slower than this are logged as slow (a module setting)


@contextmanager
def timed(what: str, level: int = logging.INFO) -> Iterator[None]:
    """Log `what` with its duration when it ends (also when it fails)."""
    started = time.perf_counter()
    outcome = "failed after"
    try:
        yield
        outcome = "took"
    finally:
        logger.log(level, "%s %s %.3f s", what, outcome, time.perf_counter() - started)
