"""Collections on a Qdrant server or cluster through qdrant-client: the scale-out twin of ``EdgeIndex``.

A collection ``c`` is the Qdrant collection ``<prefix>c`` holding the same points as the embedded engine would
(ids, dense and BM25 vectors, payload), with keyword payload indexes on the access fields and the document id.
Its descriptor (owning tenant, embedding model, spec, the id of the registry that writes it) is the Qdrant
collection's metadata, so any replica can list, describe and search it with nothing on local disk; the
document registry stays with the one writer (see ``Retriever``).

``QdrantServer(path=...)`` runs qdrant-client's local mode: the same API on an in-process exact search, used by
the tests; it proves the requests and their semantics, not the server (network, sharding, payload indexes).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import qdrant_edge as qe
from pydantic import BaseModel, ConfigDict, Field, model_validator
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from goldenpath.rag._exceptions import CollectionExists, CollectionNotFound
from goldenpath.rag._index import (
    DENSE,
    DOCUMENT,
    KEYWORD_FIELDS,
    SPARSE,
    IndexPoint,
    Match,
    Scored,
    Search,
    Where,
    bm25_model,
)
from goldenpath.rag._settings import CollectionSpec

DESCRIPTOR = "goldenpath"  # key of the collection's descriptor in the Qdrant collection metadata
COUNTS = "goldenpath_counts"  # {"documents", "chunks"} as of the writer's last write


class QdrantServer(BaseModel):
    """Where the collections live: a Qdrant server or cluster (``url``, with ``api_key`` when it needs one), or
    qdrant-client's local mode in a folder (``path``; ``":memory:"`` for none). Collections are named
    ``prefix + name``, so several deployments can share one Qdrant. ``shard_number`` and ``replication_factor``
    apply to collections created from here (``None``: the server's defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    api_key: str | None = Field(None, repr=False)
    path: str | None = None
    prefix: str = Field("gp_", pattern=r"^[A-Za-z0-9_-]{0,32}$")
    timeout: int = Field(30, ge=1)  # seconds per request
    shard_number: int | None = Field(None, ge=1)
    replication_factor: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_place(self) -> QdrantServer:
        if (self.url is None) == (self.path is None):
            raise ValueError("give either url (a Qdrant server) or path (qdrant-client local mode), not both")
        if self.api_key is not None and self.url is None:
            raise ValueError("api_key is for a server (url); local mode has none")
        return self

    def connect(self) -> QdrantClient:
        if self.url is not None:
            return QdrantClient(url=self.url, api_key=self.api_key, timeout=self.timeout)
        if self.path == ":memory:":
            return QdrantClient(location=":memory:")
        # the retriever calls from worker threads; it serializes the calls on each collection
        return QdrantClient(path=self.path, force_disable_check_same_thread=True)


def _missing(exc: Exception) -> bool:
    """Whether a qdrant-client error says the collection does not exist (server: 404; local mode: ValueError)."""
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code == 404
    message = str(exc)
    return isinstance(exc, ValueError) and message.startswith("Collection ") and message.endswith("not found")


@contextmanager
def _on(name: str) -> Iterator[None]:
    try:
        yield
    except (UnexpectedResponse, ValueError) as exc:
        if _missing(exc):
            raise CollectionNotFound(name) from None
        raise


class ServerCollections:
    """The goldenpath collections of one Qdrant. Thread-safe where the client is (a server client is; the
    retriever serializes calls per collection, which is what local mode needs)."""

    def __init__(
        self,
        client: QdrantClient,
        prefix: str = "gp_",
        *,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self._shard_number = shard_number
        self._replication_factor = replication_factor
        self._owns_client = owns_client

    @classmethod
    def of(cls, qdrant: QdrantServer | QdrantClient) -> ServerCollections:
        """From settings (the client is made and later closed here) or a client the caller keeps and closes."""
        if isinstance(qdrant, QdrantClient):
            return cls(qdrant)
        return cls(
            qdrant.connect(),
            qdrant.prefix,
            shard_number=qdrant.shard_number,
            replication_factor=qdrant.replication_factor,
            owns_client=True,
        )

    def qualified(self, name: str) -> str:
        return self.prefix + name

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def names(self) -> list[str]:
        """Collections under the prefix (some may not be goldenpath's: ``describe`` says)."""
        found = self.client.get_collections().collections
        return sorted(c.name[len(self.prefix) :] for c in found if c.name.startswith(self.prefix))

    def describe(self, name: str) -> dict[str, Any] | None:
        """The descriptor written at creation, or ``None`` when there is no such goldenpath collection."""
        metadata = self._metadata(name)
        descriptor = metadata.get(DESCRIPTOR) if metadata is not None else None
        return dict(descriptor) if isinstance(descriptor, dict) else None

    def counts(self, name: str) -> tuple[int, int]:
        """Documents and chunks, as the writer last recorded them."""
        metadata = self._metadata(name)
        if metadata is None:
            raise CollectionNotFound(name)
        counts = metadata.get(COUNTS) or {}
        return int(counts.get("documents", 0)), int(counts.get("chunks", 0))

    def set_counts(self, name: str, documents: int, chunks: int) -> None:
        with _on(name):
            self.client.update_collection(
                self.qualified(name), metadata={COUNTS: {"documents": documents, "chunks": chunks}}
            )

    def create(self, name: str, dimensions: int, descriptor: dict[str, Any]) -> None:
        """A new collection with payload indexes; ``CollectionExists`` when the name is taken (also by a
        collection that is not goldenpath's)."""
        qualified = self.qualified(name)
        if self.client.collection_exists(qualified):
            raise CollectionExists(name)
        try:
            self.client.create_collection(
                qualified,
                vectors_config={DENSE: models.VectorParams(size=dimensions, distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                shard_number=self._shard_number,
                replication_factor=self._replication_factor,
                metadata={DESCRIPTOR: descriptor, COUNTS: {"documents": 0, "chunks": 0}},
            )
        except (UnexpectedResponse, ValueError):
            if self.client.collection_exists(qualified):  # created meanwhile, elsewhere
                raise CollectionExists(name) from None
            raise
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Payload indexes have no effect in the local Qdrant")
                for field in KEYWORD_FIELDS:
                    self.client.create_payload_index(qualified, field, models.PayloadSchemaType.KEYWORD, wait=True)
        except BaseException:
            self.client.delete_collection(qualified)
            raise

    def drop(self, name: str) -> None:
        self.client.delete_collection(self.qualified(name))

    def index(self, name: str, spec: CollectionSpec) -> ServerIndex:
        return ServerIndex(self.client, name, self.qualified(name), spec)

    def _metadata(self, name: str) -> dict[str, Any] | None:
        try:
            info = self.client.get_collection(self.qualified(name))
        except (UnexpectedResponse, ValueError) as exc:
            if _missing(exc):
                return None
            raise
        return dict(info.config.metadata or {})


def _condition(match: Match) -> models.FieldCondition:
    if isinstance(match.value, list):
        return models.FieldCondition(key=match.key, match=models.MatchAny(any=match.value))
    return models.FieldCondition(key=match.key, match=models.MatchValue(value=match.value))


def server_filter(conditions: Where) -> models.Filter | None:
    """The same conditions as ``_index.edge_filter``, as a qdrant-client filter."""
    must: list[models.Condition] = [_condition(m) for m in conditions.must]
    if conditions.access is not None:
        must.append(models.Filter(should=[_condition(m) for m in conditions.access]))
    return models.Filter(must=must) if must else None


def _sparse(vector: qe.SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


class ServerIndex:
    """One collection on the server, with ``EdgeIndex``'s methods. Every write waits until it is applied."""

    def __init__(self, client: QdrantClient, name: str, qualified: str, spec: CollectionSpec) -> None:
        self._client = client
        self._name = name
        self._collection = qualified
        self.bm25 = bm25_model(spec)

    def close(self) -> None:
        """Nothing to release: the client belongs to the ``ServerCollections``."""

    def upsert(self, points: Sequence[IndexPoint], batch: int = 256) -> None:
        for start in range(0, len(points), batch):
            structs = [
                models.PointStruct(id=p.id, vector={DENSE: list(p.dense), SPARSE: _sparse(p.sparse)}, payload=p.payload)
                for p in points[start : start + batch]
            ]
            with _on(self._name):
                self._client.upsert(self._collection, points=structs, wait=True)

    def delete(self, ids: Sequence[str], batch: int = 1024) -> None:
        for start in range(0, len(ids), batch):
            selector = models.PointIdsList(points=list(ids[start : start + batch]))
            with _on(self._name):
                self._client.delete(self._collection, points_selector=selector, wait=True)

    def flush(self) -> None:
        """Nothing to do: a write returned once the server applied it (``wait=True``), and it is in its WAL."""

    def optimize(self) -> None:
        """Nothing to do: the server builds HNSW graphs and payload indexes in the background."""

    def stored(self, ids: Sequence[str]) -> dict[str, tuple[list[float], qe.SparseVector]]:
        """The vectors of stored points, to rewrite them under a new access list without embedding again."""
        with _on(self._name):
            records = self._client.retrieve(self._collection, list(ids), with_payload=False, with_vectors=True)
        out: dict[str, tuple[list[float], qe.SparseVector]] = {}
        for record in records:
            vectors = record.vector
            assert isinstance(vectors, dict)
            dense, sparse = vectors[DENSE], vectors[SPARSE]
            assert isinstance(dense, list) and isinstance(sparse, models.SparseVector)
            out[str(record.id)] = (
                [float(x) for x in dense],  # type: ignore[arg-type]  # one vector per name, not a multivector
                qe.SparseVector(list(sparse.indices), list(sparse.values)),
            )
        return out

    def count(self, document_id: str | None = None) -> int:
        where = None
        if document_id is not None:
            where = models.Filter(
                must=[models.FieldCondition(key=DOCUMENT, match=models.MatchValue(value=document_id))]
            )
        with _on(self._name):
            return self._client.count(self._collection, count_filter=where, exact=True).count

    def query(self, searches: Sequence[Search]) -> list[list[Scored]]:
        requests = [self._request(s) for s in searches]
        with _on(self._name):
            responses = self._client.query_batch_points(self._collection, requests=requests)
        return [[Scored(str(p.id), p.score, dict(p.payload or {})) for p in r.points] for r in responses]

    def _request(self, search: Search) -> models.QueryRequest:
        sparse = isinstance(search.vector, qe.SparseVector)
        query: models.SparseVector | list[float] = (
            _sparse(search.vector) if isinstance(search.vector, qe.SparseVector) else list(search.vector)
        )
        return models.QueryRequest(
            query=query,
            using=SPARSE if sparse else DENSE,
            filter=server_filter(search.where),
            limit=search.limit,
            params=models.SearchParams(hnsw_ef=search.hnsw_ef) if search.hnsw_ef else None,
            with_payload=search.payload,
        )

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        with _on(self._name):
            records = self._client.retrieve(self._collection, list(ids), with_payload=True, with_vectors=False)
        return {str(r.id): dict(r.payload or {}) for r in records}
