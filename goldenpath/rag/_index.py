"""One collection's search index: a dense vector and a BM25 sparse vector per chunk, the chunk's text and its
document's access list and metadata as payload. ``SearchIndex`` is what the retriever needs of one; ``EdgeIndex``
is it on the embedded Qdrant engine (qdrant-edge), ``_server_index.ServerIndex`` on a Qdrant server or cluster.

Both get the same points (ids, vectors, payload) and the same conditions: BM25 vectors are computed here, with
the collection's ``qe.Bm25``, for either engine, and the engines weight them by IDF at query time.

Access control is a payload filter evaluated inside the engine's search (keyword indexes on the three access
fields), never a pass over results: a search returns the best chunks among those the caller may read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import qdrant_edge as qe

from goldenpath.rag._exceptions import InvalidFilter, RetrievalError
from goldenpath.rag._settings import CollectionSpec
from goldenpath.rag._types import AccessList, Identity

DENSE = "dense"
SPARSE = "bm25"
ACL_PRINCIPALS = "acl_principals"
ACL_GROUPS = "acl_groups"
ACL_TENANTS = "acl_tenants"
DOCUMENT = "document_id"
KEYWORD_FIELDS = (ACL_PRINCIPALS, ACL_GROUPS, ACL_TENANTS, DOCUMENT, "source")
FILTER_FIELDS = frozenset({DOCUMENT, "source"})  # top-level fields a metadata filter may name besides metadata keys
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,127}$")

Scalar = str | int | bool
MetadataFilter = Mapping[str, Scalar | Sequence[str] | Sequence[int]]


@dataclass(frozen=True, slots=True)
class IndexPoint:
    id: str
    dense: Sequence[float]
    sparse: qe.SparseVector
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Match:
    """Payload field ``key`` equals ``value``, or (a list) any of its values."""

    key: str
    value: Scalar | list[str] | list[int]


@dataclass(frozen=True, slots=True)
class Where:
    """The conditions of a search: every one of ``must``, and at least one of ``access`` unless it is ``None``
    (an admin reads everything)."""

    must: tuple[Match, ...] = ()
    access: tuple[Match, ...] | None = None


@dataclass(frozen=True, slots=True)
class Search:
    """One branch of a query: the ``limit`` nearest points to ``vector`` (dense floats, or a BM25 sparse vector)
    among those that satisfy ``where``."""

    vector: Sequence[float] | qe.SparseVector
    limit: int
    where: Where
    hnsw_ef: int | None = None
    payload: bool = False


@dataclass(frozen=True, slots=True)
class Scored:
    id: str
    score: float
    payload: dict[str, Any]  # empty unless the search asked for it


class SearchIndex(Protocol):
    """One collection's index, whichever engine holds it. Writes are idempotent by point id; a write returns
    once it is applied (``flush`` makes it durable where the engine needs to be told)."""

    bm25: qe.Bm25

    def close(self) -> None: ...
    def upsert(self, points: Sequence[IndexPoint]) -> None: ...
    def delete(self, ids: Sequence[str]) -> None: ...
    def flush(self) -> None: ...
    def optimize(self) -> None: ...
    def stored(self, ids: Sequence[str]) -> dict[str, tuple[list[float], qe.SparseVector]]: ...
    def count(self, document_id: str | None = None) -> int: ...
    def query(self, searches: Sequence[Search]) -> list[list[Scored]]: ...
    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...


def bm25_model(spec: CollectionSpec) -> qe.Bm25:
    """The collection's BM25 term weighting (tokenizer, English stopwords and stemmer, k1, b, mean length)."""
    return qe.Bm25(qe.Bm25Config(k=spec.bm25_k1, b=spec.bm25_b, avg_len=spec.bm25_avg_len, language="english"))


def acl_payload(acl: AccessList) -> dict[str, list[str]]:
    return {
        ACL_PRINCIPALS: sorted(acl.principals),
        ACL_GROUPS: sorted(acl.groups),
        ACL_TENANTS: sorted(acl.tenants),
    }


def access_conditions(identity: Identity) -> tuple[Match, ...] | None:
    """What ``identity`` may read, any one of which suffices (``None`` for an admin: everything)."""
    if identity.is_admin:
        return None
    should = [Match(ACL_PRINCIPALS, identity.principal), Match(ACL_TENANTS, identity.tenant)]
    if identity.groups:
        should.append(Match(ACL_GROUPS, sorted(identity.groups)))
    return tuple(should)


def metadata_conditions(spec: MetadataFilter) -> tuple[Match, ...]:
    """Equality (a scalar) or any-of (a list) on document metadata keys, all of which must hold.

    Keys name metadata fields, or ``document_id`` / ``source``."""
    if not isinstance(spec, Mapping):
        raise InvalidFilter(f"a filter is an object of metadata key to value(s), got {type(spec).__name__}")
    must: list[Match] = []
    for key, value in spec.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise InvalidFilter(f"filter key {key!r}: use letters, digits, '_' and '-' (at most 128)")
        path = key if key in FILTER_FIELDS else f"metadata.{key}"
        must.append(Match(path, _value(key, value)))
    return tuple(must)


def where(identity: Identity, spec: MetadataFilter | None) -> Where:
    return Where(must=metadata_conditions(spec) if spec is not None else (), access=access_conditions(identity))


def _value(key: str, value: object) -> Scalar | list[str] | list[int]:
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, list | tuple):
        items = list(value)
        if not items:
            raise InvalidFilter(f"filter {key!r}: an empty list matches nothing; give at least one value")
        if all(isinstance(v, str) for v in items):
            return [str(v) for v in items]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            return [int(v) for v in items]
        raise InvalidFilter(f"filter {key!r}: a list must hold only strings or only integers")
    raise InvalidFilter(
        f"filter {key!r}: a value is a string, integer or boolean, or a list of strings or integers; "
        f"got {type(value).__name__}"
    )


def _edge_condition(match: Match) -> qe.FieldCondition:
    if isinstance(match.value, list):
        return qe.FieldCondition(match.key, match=qe.MatchAny(match.value))
    return qe.FieldCondition(match.key, match=qe.MatchValue(match.value))


def edge_filter(conditions: Where) -> qe.Filter | None:
    must: list[qe.ConditionType] = [_edge_condition(m) for m in conditions.must]
    if conditions.access is not None:
        must.append(qe.Filter(should=[_edge_condition(m) for m in conditions.access]))
    return qe.Filter(must=must) if must else None


class EdgeIndex:
    """An ``EdgeShard`` in a folder; not thread-safe by itself (the collection serializes writes)."""

    def __init__(self, shard: qe.EdgeShard, spec: CollectionSpec) -> None:
        self._shard = shard
        self.bm25 = bm25_model(spec)

    @classmethod
    def create(cls, path: Path, dimensions: int, spec: CollectionSpec) -> EdgeIndex:
        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dimensions, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )
        shard = qe.EdgeShard.create(str(path), config)
        for field in KEYWORD_FIELDS:
            shard.update(qe.UpdateOperation.create_field_index(field, qe.KeywordIndexParams()))
        shard.flush()
        return cls(shard, spec)

    @classmethod
    def open(cls, path: Path, spec: CollectionSpec) -> EdgeIndex:
        try:
            shard = qe.EdgeShard.load(str(path))
        except Exception as exc:
            if "WouldBlock" in str(exc):
                raise RetrievalError(
                    f"{path.parent.name}: the collection is open in another process (or another Retriever); "
                    "one process owns a data directory's collections: go through it (the gateway)"
                ) from None
            raise
        return cls(shard, spec)

    def close(self) -> None:
        self._shard.close()

    def upsert(self, points: Sequence[IndexPoint], batch: int = 256) -> None:
        for start in range(0, len(points), batch):
            ops = [
                qe.Point(p.id, {DENSE: list(p.dense), SPARSE: p.sparse}, p.payload)
                for p in points[start : start + batch]
            ]
            self._shard.update(qe.UpdateOperation.upsert_points(ops))

    def delete(self, ids: Sequence[str], batch: int = 1024) -> None:
        for start in range(0, len(ids), batch):
            self._shard.update(qe.UpdateOperation.delete_points(list(ids[start : start + batch])))

    def flush(self) -> None:
        self._shard.flush()

    def optimize(self) -> None:
        """Build the HNSW graph and payload indexes of new segments (blocks until done)."""
        self._shard.optimize()

    def stored(self, ids: Sequence[str]) -> dict[str, tuple[list[float], qe.SparseVector]]:
        """The vectors of stored points, to rewrite them under a new access list without embedding again."""
        out: dict[str, tuple[list[float], qe.SparseVector]] = {}
        for record in self._shard.retrieve(list(ids), with_payload=False, with_vector=True):
            vectors = record.vector
            assert isinstance(vectors, dict)
            dense, sparse = vectors[DENSE], vectors[SPARSE]
            assert isinstance(dense, list) and isinstance(sparse, qe.SparseVector)
            out[str(record.id)] = ([float(x) for x in dense], sparse)  # type: ignore[arg-type]  # flat: one vector
        return out

    def count(self, document_id: str | None = None) -> int:
        """Points in the index, or of one document."""
        where = None
        if document_id is not None:
            where = qe.Filter(must=[qe.FieldCondition(DOCUMENT, match=qe.MatchValue(document_id))])
        return self._shard.count(qe.CountRequest(exact=True, filter=where))

    def query(self, searches: Sequence[Search]) -> list[list[Scored]]:
        requests = [self._request(s) for s in searches]
        if len(requests) == 1:
            results = [self._shard.query(requests[0])]
        else:
            results = self._shard.query_batch(qe.QueryBatchRequest(requests))
        return [[Scored(str(p.id), p.score, dict(p.payload or {})) for p in r] for r in results]

    def _request(self, search: Search) -> qe.QueryRequest:
        using = SPARSE if isinstance(search.vector, qe.SparseVector) else DENSE
        vector = search.vector if isinstance(search.vector, qe.SparseVector) else list(search.vector)
        return qe.QueryRequest(
            limit=search.limit,
            query=qe.Query.Nearest(vector, using=using),
            filter=edge_filter(search.where),
            params=qe.SearchParams(hnsw_ef=search.hnsw_ef) if search.hnsw_ef else None,
            with_payload=search.payload,
        )

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {
            str(r.id): dict(r.payload or {})
            for r in self._shard.retrieve(list(ids), with_payload=True, with_vector=False)
        }
