"""A real 3-node Patroni cluster on loopback (deploy/devcluster.py), shared by the HA tests.

Started once per session (about 10 s) and killed at the end, even after a failure. A test
that kills or switches the leader leaves the cluster to heal by itself; `healthy_cluster`
waits for it (restarting a node a test killed) before the next test starts.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_devcluster() -> Any:
    """deploy/devcluster.py as a module (deploy/ is not a package: it ships with the repo)."""
    name = "embeddinghub_devcluster"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / "devcluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def cluster() -> Iterator[Any]:
    devcluster = load_devcluster()
    with devcluster.DevCluster() as c:
        yield c


@pytest.fixture
def healthy_cluster(cluster: Any) -> Any:
    """The cluster with every node back up, one leader and every replica streaming."""
    for node in cluster.nodes:
        if node.process is None or node.process.poll() is not None:
            cluster.start_node(node.name)
    cluster.wait_healthy(timeout=90)
    return cluster


@pytest.fixture(scope="session")
def demo_vectors() -> tuple[list[str], np.ndarray]:
    """Real sentence embeddings (3,045 x 384, the package's demo data) and their keys."""
    data = np.load(ROOT / "embeddinghub" / "data" / "pydocs_demo.npz")
    return [str(k) for k in data["keys"]], data["embeddings"].astype(np.float32)
