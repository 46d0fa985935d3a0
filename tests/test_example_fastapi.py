"""The FastAPI example in examples/, driven through its test client under concurrent requests."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fastapi_app"] = module  # pydantic resolves the models' types through it
    spec.loader.exec_module(module)
    return module


def test_search_service_under_concurrent_requests(dsn: str) -> None:
    app = load_example().create_app(dsn, pool=4)
    space = f"api_{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(200, 8)).astype(np.float32)
    with TestClient(app) as client:
        assert client.put(f"/spaces/{space}", json={"dims": 8, "metric": "l2"}).status_code == 200

        def upsert(chunk: int) -> int:
            rows = range(chunk * 20, chunk * 20 + 20)
            body = {"keys": [f"k{i}" for i in rows], "vectors": vectors[list(rows)].tolist(),
                    "metadata": [{"chunk": chunk} for _ in rows]}
            reply = client.post(f"/spaces/{space}/vectors", json=body)
            assert reply.status_code == 200, reply.text
            return int(reply.json()["upserted"])

        def search(i: int) -> str:
            reply = client.post(f"/spaces/{space}/search", json={"vector": vectors[i].tolist(), "k": 3})
            assert reply.status_code == 200, reply.text
            return str(reply.json()[0]["key"])

        with ThreadPoolExecutor(8) as pool:
            assert sum(pool.map(upsert, range(10))) == 200
            assert list(pool.map(search, range(0, 200, 5))) == [f"k{i}" for i in range(0, 200, 5)]
        filtered = client.post(f"/spaces/{space}/search",
                               json={"vector": vectors[0].tolist(), "k": 50, "where": {"chunk": 3}})
        assert {h["key"] for h in filtered.json()} == {f"k{i}" for i in range(60, 80)}
        assert client.get(f"/spaces/{space}/vectors/k7").json()["vector"] == vectors[7].tolist()
        # typed errors become HTTP errors, never a 500
        assert client.get(f"/spaces/{space}/vectors/nope").status_code == 404
        assert client.post("/spaces/no_such_space/search", json={"vector": [0] * 8}).status_code == 404
        bad = client.post(f"/spaces/{space}/vectors", json={"keys": ["a"], "vectors": [[1, 2]]})
        assert bad.status_code == 422 and bad.json()["error"] == "DimensionMismatch"
        app.state.hub.delete_space(space)
