"""One collection's search index on the embedded Qdrant engine (qdrant-edge): a dense vector and a BM25 sparse
vector per chunk, the chunk's text and its document's access list and metadata as payload.

Access control is a payload filter evaluated inside the engine's search (keyword indexes on the three access
fields), never a pass over results: a search returns the best chunks among those the caller may read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def acl_payload(acl: AccessList) -> dict[str, list[str]]:
    return {
        ACL_PRINCIPALS: sorted(acl.principals),
        ACL_GROUPS: sorted(acl.groups),
        ACL_TENANTS: sorted(acl.tenants),
    }


def access_filter(identity: Identity) -> qe.Filter | None:
    """What ``identity`` may read, as an engine filter (``None`` for an admin: everything)."""
    if identity.is_admin:
        return None
    should: list[qe.ConditionType] = [
        qe.FieldCondition(ACL_PRINCIPALS, match=qe.MatchValue(identity.principal)),
        qe.FieldCondition(ACL_TENANTS, match=qe.MatchValue(identity.tenant)),
    ]
    if identity.groups:
        should.append(qe.FieldCondition(ACL_GROUPS, match=qe.MatchAny(sorted(identity.groups))))
    return qe.Filter(should=should)


def metadata_filter(spec: MetadataFilter) -> qe.Filter | None:
    """Equality (a scalar) or any-of (a list) on document metadata keys, all of which must hold.

    Keys name metadata fields, or ``document_id`` / ``source``."""
    if not isinstance(spec, Mapping):
        raise InvalidFilter(f"a filter is an object of metadata key to value(s), got {type(spec).__name__}")
    must: list[qe.ConditionType] = []
    for key, value in spec.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise InvalidFilter(f"filter key {key!r}: use letters, digits, '_' and '-' (at most 128)")
        path = key if key in FILTER_FIELDS else f"metadata.{key}"
        must.append(qe.FieldCondition(path, match=_match(key, value)))
    return qe.Filter(must=must) if must else None


def _match(key: str, value: object) -> qe.MatchValue | qe.MatchAny:
    if isinstance(value, str | bool | int):
        return qe.MatchValue(value)
    if isinstance(value, list | tuple):
        items = list(value)
        if not items:
            raise InvalidFilter(f"filter {key!r}: an empty list matches nothing; give at least one value")
        if all(isinstance(v, str) for v in items):
            return qe.MatchAny([str(v) for v in items])
        if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            return qe.MatchAny([int(v) for v in items])
        raise InvalidFilter(f"filter {key!r}: a list must hold only strings or only integers")
    raise InvalidFilter(
        f"filter {key!r}: a value is a string, integer or boolean, or a list of strings or integers; "
        f"got {type(value).__name__}"
    )


def both(*filters: qe.Filter | None) -> qe.Filter | None:
    present = [f for f in filters if f is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else qe.Filter(must=list(present))


class EdgeIndex:
    """An ``EdgeShard`` in a folder; not thread-safe by itself (the collection serializes writes)."""

    def __init__(self, shard: qe.EdgeShard, spec: CollectionSpec) -> None:
        self._shard = shard
        self.bm25 = qe.Bm25(qe.Bm25Config(k=spec.bm25_k1, b=spec.bm25_b, avg_len=spec.bm25_avg_len, language="english"))

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

    def sparse_document(self, text: str) -> qe.SparseVector:
        return self.bm25.embed_document(text)

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

    def point_ids(self) -> list[str]:
        ids: list[str] = []
        offset: qe.PointId | None = None
        while True:
            records, offset = self._shard.scroll(
                qe.ScrollRequest(offset=offset, limit=1024, with_payload=False, with_vector=False)
            )
            ids.extend(str(r.id) for r in records)
            if offset is None:
                return ids

    def dense_request(
        self, vector: Sequence[float], limit: int, where: qe.Filter | None, hnsw_ef: int | None, payload: bool
    ) -> qe.QueryRequest:
        return qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(list(vector), using=DENSE),
            filter=where,
            params=qe.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None,
            with_payload=payload,
        )

    def sparse_request(self, text: str, limit: int, where: qe.Filter | None, payload: bool) -> qe.QueryRequest | None:
        vector = self.bm25.embed_query(text)
        if not vector.indices:  # only stopwords or punctuation: BM25 has nothing to match
            return None
        return qe.QueryRequest(
            limit=limit, query=qe.Query.Nearest(vector, using=SPARSE), filter=where, with_payload=payload
        )

    def query(self, requests: list[qe.QueryRequest]) -> list[list[qe.ScoredPoint]]:
        if len(requests) == 1:
            return [self._shard.query(requests[0])]
        return self._shard.query_batch(qe.QueryBatchRequest(requests))

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {
            str(r.id): dict(r.payload or {})
            for r in self._shard.retrieve(list(ids), with_payload=True, with_vector=False)
        }
