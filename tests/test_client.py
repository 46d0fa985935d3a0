"""The original Embeddinghub client's surface: same calls, plain lists back."""

from __future__ import annotations

import uuid

import pytest

import embeddinghub as eh


def test_original_client_calls(dsn: str) -> None:
    name = f"orig_{uuid.uuid4().hex[:8]}"
    with eh.EmbeddingHubClient(dsn=dsn) as client:
        client.create_space(name, 3)
        try:
            client.set(name, "apple", [1, 0, 0])
            client.multiset(name, {"orange": [1, 1, 0], "potato": [0, 1, 0], "chicken": [-1, -1, 0]})
            assert client.get(name, "apple") == [1.0, 0.0, 0.0]
            assert client.multiget(name, ["orange", "potato"]) == [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
            assert client.nearest_neighbor(name, 2, key="apple") == ["orange", "potato"]
            assert client.nearest_neighbor(name, 1, vector=[-1, -0.9, 0]) == ["chicken"]
            assert dict(client.download(name)) == {
                "apple": [1.0, 0.0, 0.0], "chicken": [-1.0, -1.0, 0.0],
                "orange": [1.0, 1.0, 0.0], "potato": [0.0, 1.0, 0.0],
            }
            with pytest.raises(eh.KeyNotFound, match="'pear'"):
                client.get(name, "pear")
            client.freeze_space(name)
            with pytest.raises(eh.SpaceFrozen):
                client.set(name, "pear", [0, 0, 1])
        finally:
            client.hub.delete_space(name)


def test_original_client_by_host_and_port_reports_failures_typed() -> None:
    with pytest.raises(eh.ConnectionFailed, match="cannot connect"):
        eh.EmbeddingHubClient("127.0.0.1", 1)
