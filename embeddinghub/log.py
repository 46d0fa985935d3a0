"""Logging on the standard `logging` module, logger `embeddinghub`.

INFO (silent unless the application turns it on): connects, schema migrations that ran,
index builds with their duration, every Hub/Space call slower than `SLOW_SECONDS` with its
duration. WARNING (printed to stderr by Python's last-resort handler while the application
has configured no logging, as for any library): a lost connection being re-established, a
wait for a crashed embedded server's processes. Turn INFO on with e.g.
`logging.basicConfig(level=logging.INFO)`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["SLOW_SECONDS", "logger", "timed"]

logger = logging.getLogger("embeddinghub")

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
