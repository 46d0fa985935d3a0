"""Logging on the `embeddinghub` logger: silent by default; connects, index builds and slow calls."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest

import embeddinghub as eh
from embeddinghub import log


def test_info_is_silent_unless_configured(dsn: str) -> None:
    code = (
        "import embeddinghub as eh, logging, sys\n"
        "from embeddinghub import log\n"
        "log.SLOW_SECONDS = 0.0\n"
        f"hub = eh.connect({dsn!r})\n"
        "hub.list_spaces(); hub.close()\n"
        "logging.getLogger('embeddinghub').warning('a warning is shown')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "a warning is shown\n" and proc.stdout == ""


def test_connects_index_builds_and_slow_calls_are_logged(
    dsn: str,
    make_space: Callable[..., eh.Space],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="embeddinghub")
    with eh.connect(dsn) as hub:
        space = hub.get_space(make_space(dims=4).name)
        space.multiset([f"k{i}" for i in range(50)], np.random.default_rng(0).normal(size=(50, 4)))
        space.create_index(m=8, ef_construction=32)
        monkeypatch.setattr(log, "SLOW_SECONDS", 0.0)  # every call is slow now
        space.count()
    text = caplog.text
    assert "connected to" in text and "password" not in text.replace("password=***", "")
    assert f"rebuilding the hnsw index of space {space.name!r}" in text and " took " in text
    assert f"slow call: count() on {space.name!r} took" in text  # INFO, when asked for
    assert all(r.name == "embeddinghub" for r in caplog.records)
