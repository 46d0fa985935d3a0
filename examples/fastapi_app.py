"""A search service on embeddinghub: FastAPI, one pooled Hub shared by every request.

    pip install embeddinghub fastapi uvicorn
    EMBEDDINGHUB_DSN=postgresql://app@db/emb uvicorn examples.fastapi_app:app

Endpoints:
    PUT  /spaces/{space}                {"dims": 384, "metric": "cosine"}   create if missing
    POST /spaces/{space}/vectors        {"keys": [...], "vectors": [[...]], "metadata": [...]}
    POST /spaces/{space}/search         {"vector": [...], "k": 10, "where": {...}}
    GET  /spaces/{space}/vectors/{key}

FastAPI runs these (plain `def`) endpoints in its thread pool; the pooled Hub leases each
call its own connection, so concurrent requests never share one. embeddinghub's typed errors
become HTTP errors: unknown space/key 404, bad input 422, read-only 409, unreachable 503.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import embeddinghub as eh

STATUS = {
    eh.SpaceNotFound: 404,
    eh.KeyNotFound: 404,
    eh.PartitionNotFound: 404,
    eh.InvalidArgument: 422,
    eh.SpaceExists: 409,
    eh.SpaceFrozen: 409,
    eh.PermissionDenied: 403,
    eh.ConnectionFailed: 503,
}


class SpaceSpec(BaseModel):
    dims: int
    metric: str = "cosine"


class Upsert(BaseModel):
    keys: list[str]
    vectors: list[list[float]]
    metadata: list[dict[str, Any] | None] | None = None
    partition: str | None = None


class Query(BaseModel):
    vector: list[float]
    k: int = Field(10, ge=1, le=1000)
    where: dict[str, Any] | None = None
    partition: str | None = None


def create_app(dsn: str | None = None, pool: int = 8) -> FastAPI:
    """The service, on `dsn` (default: $EMBEDDINGHUB_DSN, else the embedded server)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.hub = eh.connect(dsn, pool=pool)
        try:
            yield
        finally:
            app.state.hub.close()

    app = FastAPI(title="embeddinghub search", lifespan=lifespan)

    @app.exception_handler(eh.EmbeddingHubError)
    def typed_error(request: Request, exc: eh.EmbeddingHubError) -> JSONResponse:
        status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 500)
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=status)

    def hub(request: Request) -> eh.Hub:
        return request.app.state.hub  # type: ignore[no-any-return]

    @app.put("/spaces/{space}")
    def create_space(space: str, spec: SpaceSpec, request: Request) -> dict[str, Any]:
        h = hub(request)
        if not h.has_space(space):
            h.create_space(space, dims=spec.dims, metric=spec.metric)
        return h.get_space(space).info() | {"created_at": None, "last_write": None}

    @app.post("/spaces/{space}/vectors")
    def upsert(space: str, body: Upsert, request: Request) -> dict[str, int]:
        count = hub(request).get_space(space).multiset(
            body.keys, body.vectors, metadata=body.metadata, partition=body.partition
        )
        return {"upserted": count}  # one transaction: every row or none

    @app.post("/spaces/{space}/search")
    def search(space: str, query: Query, request: Request) -> list[dict[str, Any]]:
        hits = hub(request).get_space(space).nearest_neighbors(
            query.k, vector=query.vector, where=query.where, partition=query.partition
        )
        return [
            {"key": n.key, "distance": n.distance, "partition": n.partition, "metadata": n.metadata}
            for n in hits
        ]

    @app.get("/spaces/{space}/vectors/{key}")
    def get(space: str, key: str, request: Request) -> dict[str, Any]:
        vector = hub(request).get_space(space).get(key)
        return {"key": key, "vector": [float(x) for x in vector]}

    return app


app = create_app(os.environ.get("EMBEDDINGHUB_DSN"))
