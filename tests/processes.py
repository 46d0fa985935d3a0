"""Worker processes for the race and soak tests (tests/race_worker.py), and their fixture."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

WORKER = Path(__file__).with_name("race_worker.py")


class Worker:
    def __init__(self, mode: str, **args: Any) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), mode, json.dumps(args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until connected (or the worker died)
        assert line.strip() == "ready", self.proc.stderr.read() if self.proc.stderr else line

    def result(self, timeout: float = 90) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(name="workers")
def workers_fixture() -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(mode: str, **args: Any) -> Worker:
        w = Worker(mode, **args)
        started.append(w)
        return w

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
        if w.proc.stdout is not None and not w.proc.stdout.closed:
            w.proc.communicate()  # and close its pipes
