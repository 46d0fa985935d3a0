"""The original Embeddinghub client's low-level surface, on top of the Hub.

For code written against `EmbeddingHubClient(host, port)`: the same method names and
arguments, returning plain Python lists as it did. New code should use `eh.connect()`
and `Space`, which add partitions, filters, versions and access control.

    client = EmbeddingHubClient()                      # the embedded server
    client = EmbeddingHubClient("db.example", 5432, user="app", database="emb")
    client.create_space("quickstart", 3)
    client.multiset("quickstart", {"apple": [1, 0, 0], "orange": [1, 1, 0]})
    client.nearest_neighbor("quickstart", 1, key="apple")   # ['orange']
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from .compat import Config, LocalConfig
from .hub import Hub, connect

__all__ = ["EmbeddingHubClient"]


class EmbeddingHubClient:
    """A client by host and port (a PostgreSQL server), or of the embedded server when
    `host` is None; `dsn=` takes any DSN instead. Spaces are L2 / float32, as in the original."""

    def __init__(
        self,
        host: str | None = None,
        port: int = 5432,
        *,
        dsn: str | None = None,
        user: str | None = None,
        password: str | None = None,
        database: str = "postgres",
        local_path: str | None = None,
    ) -> None:
        target: str | Config | LocalConfig | None = dsn
        if dsn is None and host is not None:
            target = Config(host=host, port=port, user=user, password=password, database=database)
        elif dsn is None and local_path is not None:
            target = LocalConfig(local_path)
        self.hub: Hub = connect(target)

    def close(self) -> None:
        self.hub.close()

    def __enter__(self) -> EmbeddingHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_space(self, name: str, dims: int) -> None:
        self.hub.create_space(name, dims=dims)

    def freeze_space(self, name: str) -> None:
        self.hub.freeze_space(name)

    def set(self, space: str, key: str, embedding: Sequence[float]) -> None:
        self.hub.get_space(space).set(key, embedding)

    def get(self, space: str, key: str) -> list[float]:
        return [float(x) for x in self.hub.get_space(space).get(key)]

    def multiset(self, space: str, embedding_dict: Mapping[str, Sequence[float]]) -> None:
        self.hub.get_space(space).multiset(dict(embedding_dict))

    def multiget(self, space: str, keys: Sequence[str]) -> list[list[float]]:
        return self.hub.get_space(space).multiget(list(keys)).tolist()  # type: ignore[no-any-return]

    def nearest_neighbor(
        self, space: str, num: int, key: str | None = None, vector: Sequence[float] | None = None
    ) -> list[str]:
        """The keys of the `num` nearest neighbours of `key` (itself left out) or `vector`."""
        return [n.key for n in self.hub.get_space(space).nearest_neighbors(num, key=key, vector=vector)]

    def download(self, space: str) -> Iterator[tuple[str, list[float]]]:
        """Every (key, embedding) of the space, paged from the database."""
        for key, vector in self.hub.get_space(space).iterator():
            yield key, [float(x) for x in vector]

    def __repr__(self) -> str:
        return f"<EmbeddingHubClient {self.hub.name}>"
