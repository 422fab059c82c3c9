"""Collections and the operations on them: create, ingest (chunk, embed, index), delete, retrieve.

Embedded (the default): ``<data_dir>/rag/<collection>/registry.sqlite`` (see ``_registry``) and ``.../index/``
(the engine). On a Qdrant server (``qdrant=``): the index is the Qdrant collection ``<prefix><collection>``,
whose metadata carries the collection's descriptor, and the registry is
``<data_dir>/rag-qdrant/<prefix><collection>/registry.sqlite`` of the one writer: the data directory that
created the collection, held by one process at a time (a lock file). Every other Retriever on that Qdrant
(other replicas, or the same data directory while another process holds it) lists, describes and searches
the collection but cannot change it.

Every method is synchronous and thread-safe; call it from a worker thread in async code. Per collection, one
ingest or delete runs at a time (embedding happens outside the index lock, so searches go on meanwhile), and a
search in the same Retriever never sees a write half done.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson
import qdrant_edge as qe

from goldenpath.rag._chunk import chunk_document
from goldenpath.rag._embedding import Embedding, minilm_embedding
from goldenpath.rag._exceptions import (
    CollectionExists,
    CollectionNotFound,
    DocumentNotFound,
    IngestError,
    InvalidQuery,
    RetrievalError,
)
from goldenpath.rag._index import (
    EdgeIndex,
    IndexPoint,
    MetadataFilter,
    Scored,
    Search,
    SearchIndex,
    acl_payload,
    where,
)
from goldenpath.rag._registry import DocumentInfo, Registry
from goldenpath.rag._settings import CollectionSpec, SearchSettings
from goldenpath.rag._types import AccessList, Chunk, Document, Identity

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from goldenpath.rag._server_index import QdrantServer, ServerCollections

Mode = Literal["hybrid", "dense", "bm25"]
DocumentStatus = Literal["added", "replaced", "updated", "unchanged"]
Progress = Callable[[int, int], None]  # (chunks embedded so far, chunks to embed)
MAX_K = 1000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_POINTS = uuid.UUID("6f1d9c2e-4b7a-4e0f-9a51-3c8d2b7e5a10")  # namespace of point ids


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved chunk. ``metadata`` is the document's metadata plus ``title``, ``source``, ``heading`` and
    the chunk's ``start``/``end`` char offsets in the document text."""

    document_id: str
    chunk_id: str
    score: float
    text: str
    metadata: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of ``/v1/retrieve``'s results."""
        return {
            "document_id": self.document_id,
            "chunk_id": self.chunk_id,
            "score": self.score,
            "text": self.text,
            "metadata": dict(self.metadata),
        }


Reranker = Callable[[str, list[Hit]], list[Hit]]
"""Reorders (and may drop) the fused candidates for a query; it cannot add any: hits it did not get are refused."""


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    name: str
    tenant: str  # the owning tenant
    embedding_model: str
    dimensions: int
    spec: CollectionSpec
    created_at: float
    documents: int
    chunks: int


@dataclass(frozen=True, slots=True)
class DocumentResult:
    document_id: str
    status: DocumentStatus  # updated: same content, new access list or metadata (not embedded again)
    chunks: int


@dataclass(frozen=True, slots=True)
class IngestReport:
    results: tuple[DocumentResult, ...]
    chunks_embedded: int
    seconds: float

    def count(self, status: DocumentStatus) -> int:
        return sum(1 for r in self.results if r.status == status)


@dataclass(slots=True)
class _Handle:
    name: str
    path: Path
    info: dict[str, Any]
    spec: CollectionSpec
    index: SearchIndex
    registry: Registry | None  # None: this Retriever cannot write the collection, ``read_only`` says why
    read_only: str = ""
    writer_lock: int | None = None  # the file descriptor holding the registry's lock (server collections)
    lock: threading.Lock = field(default_factory=threading.Lock)  # index and registry access
    writing: threading.Lock = field(default_factory=threading.Lock)  # one ingest or delete at a time
    closed: bool = False


@dataclass(slots=True)
class _Planned:
    document: Document
    acl: AccessList
    content_hash: str
    meta_hash: str
    previous: DocumentInfo | None
    status: DocumentStatus
    chunks: list[Chunk] = field(default_factory=list)
    vectors: list[tuple[list[float], qe.SparseVector | None]] = field(default_factory=list)


class Retriever:
    """The collections of one data directory, or of a Qdrant server with this data directory's registries.

    ``embedding`` defaults to the built-in MiniLM, loaded on first use. ``rerank``, when given, reorders the top
    ``search.rerank_depth`` fused hits of every query. ``qdrant`` puts the collections on a Qdrant server or
    cluster (a ``QdrantServer``, or a client the caller keeps and closes) instead of the embedded engine; it
    needs qdrant-client (the ``qdrant`` extra)."""

    def __init__(
        self,
        data_dir: str | Path,
        embedding: Embedding | None = None,
        *,
        search: SearchSettings | None = None,
        rerank: Reranker | None = None,
        embed_batch: int = 32,
        qdrant: QdrantServer | QdrantClient | None = None,
    ) -> None:
        self._server: ServerCollections | None = None
        if qdrant is None:
            self.root = Path(data_dir) / "rag"
        else:
            from goldenpath.rag._server_index import ServerCollections

            self._server = ServerCollections.of(qdrant)
            self.root = Path(data_dir) / "rag-qdrant"
        self.search = search or SearchSettings()
        self._embedding = embedding
        self._rerank = rerank
        self._embed_batch = embed_batch
        self._handles: dict[str, _Handle] = {}
        self._lock = threading.Lock()
        self._embedding_lock = threading.Lock()

    # -- collections -------------------------------------------------------------------------------------------

    def create_collection(self, name: str, *, tenant: str, spec: CollectionSpec | None = None) -> CollectionInfo:
        _check_name(name)
        if not tenant:
            raise RetrievalError("a collection needs an owning tenant")
        spec = spec or CollectionSpec()
        embedding = self.embedding()
        info: dict[str, Any] = {
            "name": name,
            "tenant": tenant,
            "embedding_model": embedding.name,
            "dimensions": embedding.dimensions,
            "spec": spec.model_dump(),
            "created_at": time.time(),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        if self._server is not None:
            self._create_on_server(self._server, name, info)
            return self.get_collection(name)
        with self._lock:
            target = self.root / name
            if target.exists():
                raise CollectionExists(name)
            staging = self.root / f".new-{uuid.uuid4().hex}"
            staging.mkdir()
            try:
                EdgeIndex.create(staging / "index", embedding.dimensions, spec).close()
                registry = Registry(staging / "registry.sqlite")
                registry.set_info(info)
                registry.close()
                staging.rename(target)  # the collection appears whole or not at all
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return self.get_collection(name)

    def _create_on_server(self, server: ServerCollections, name: str, info: dict[str, Any]) -> None:
        """The registry is made first (staged), then the Qdrant collection naming it as its writer."""
        info = {**info, "writer": uuid.uuid4().hex}
        with self._lock:
            staging = self.root / f".new-{uuid.uuid4().hex}"
            staging.mkdir()
            try:
                registry = Registry(staging / "registry.sqlite")
                registry.set_info(info)
                registry.close()
                server.create(name, info["dimensions"], info)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            try:
                stale = self._handles.pop(name, None)  # a collection of that name, dropped from elsewhere
                if stale is not None:
                    with stale.writing, stale.lock:
                        _release(stale)
                target = self.root / server.qualified(name)
                if target.exists():  # the registry of that earlier collection
                    target.rename(self.root / f".trash-{uuid.uuid4().hex}")
                staging.rename(target)
            except BaseException:
                server.drop(name)
                shutil.rmtree(staging, ignore_errors=True)
                raise
            for trash in self.root.glob(".trash-*"):
                shutil.rmtree(trash, ignore_errors=True)

    def list_collections(self, tenant: str | None = None) -> list[CollectionInfo]:
        """Every collection, or those ``tenant`` owns."""
        infos = []
        for name in self._names():
            try:
                info = self.get_collection(name)
            except CollectionNotFound:  # deleted meanwhile
                continue
            if tenant is None or info.tenant == tenant:
                infos.append(info)
        return infos

    def _names(self) -> list[str]:
        if self._server is not None:
            return self._server.names()
        if not self.root.is_dir():
            return []
        return [
            e.name
            for e in sorted(self.root.iterdir())
            if not e.name.startswith(".") and (e / "registry.sqlite").is_file()
        ]

    def get_collection(self, name: str) -> CollectionInfo:
        """The collection's descriptor and size (on a Qdrant server, in a Retriever that cannot write it: the
        size as of the writer's last write)."""
        handle = self._open(name)
        with handle.lock:
            _check_open(handle)
            if handle.registry is not None:
                documents, chunks = handle.registry.counts()
            else:
                assert self._server is not None  # only server collections are opened without a registry
                try:
                    documents, chunks = self._server.counts(name)
                except CollectionNotFound:
                    _release(handle)
                    raise
        info = handle.info
        return CollectionInfo(
            name=name,
            tenant=info["tenant"],
            embedding_model=info["embedding_model"],
            dimensions=info["dimensions"],
            spec=handle.spec,
            created_at=info["created_at"],
            documents=documents,
            chunks=chunks,
        )

    def delete_collection(self, name: str) -> None:
        """Remove the collection. On a Qdrant server any Retriever may, the writer's registry included: it
        finds the collection gone."""
        handle = self._open(name)
        with self._lock, handle.writing, handle.lock:
            _check_open(handle)
            _release(handle)
            self._handles.pop(name, None)
            if self._server is not None:
                self._server.drop(name)
                if handle.registry is None:
                    return
            trash = self.root / f".trash-{uuid.uuid4().hex}"
            handle.path.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            for handle in self._handles.values():
                with handle.writing, handle.lock:
                    _release(handle)
            self._handles.clear()
            if self._server is not None:
                self._server.close()

    # -- documents ---------------------------------------------------------------------------------------------

    def ingest(
        self,
        collection: str,
        documents: Iterable[Document],
        *,
        acl: AccessList,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Add or replace ``documents``, all readable under ``acl``. See ``upsert_documents``."""
        return self.upsert_documents(collection, [(d, acl) for d in documents], progress=progress)

    def upsert_documents(
        self,
        collection: str,
        items: Sequence[tuple[Document, AccessList]],
        *,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Add each document, or replace the one with its id (all of its chunks). A document whose content,
        access list and metadata are unchanged is left alone; one whose content is unchanged keeps its vectors.

        All or nothing: any error (a document that yields no text, the embedding model failing) raises before
        the collection changes, and a crash mid-write is rolled back when the collection is next opened."""
        started = time.perf_counter()
        handle = self._open(collection)
        embedding = self._embedding_for(handle)
        planned = _validate(items)
        with handle.writing:
            with handle.lock:
                registry = self._writable(handle)
                previous = registry.get([p.document.id for p in planned])
            for plan in planned:
                self._plan(handle, plan, previous.get(plan.document.id))
            embedded = self._embed(embedding, handle.index, planned, progress)
            self._write(handle, planned)
        results = tuple(DocumentResult(p.document.id, p.status, len(p.chunks)) for p in planned)
        return IngestReport(results=results, chunks_embedded=embedded, seconds=time.perf_counter() - started)

    def delete_document(self, collection: str, document_id: str) -> int:
        """Remove the document and every one of its chunks from the index; returns how many chunks went."""
        handle = self._open(collection)
        with handle.writing, handle.lock:
            registry = self._writable(handle)
            record = registry.get([document_id]).get(document_id)
            if record is None:
                raise DocumentNotFound(collection, document_id)
            entry = registry.begin([], record.point_ids)
            registry.commit(entry, [], [document_id])
            handle.index.delete(record.point_ids)
            handle.index.flush()
            registry.finish(entry)
            self._record_counts(handle, registry)
        return len(record.point_ids)

    def get_document(self, collection: str, document_id: str) -> DocumentInfo:
        handle = self._open(collection)
        with handle.lock:
            record = self._registry(handle).get([document_id]).get(document_id)
        if record is None:
            raise DocumentNotFound(collection, document_id)
        return record

    def document_ids(self, collection: str) -> list[str]:
        handle = self._open(collection)
        with handle.lock:
            return list(self._registry(handle).document_ids())

    def count_points(self, collection: str, document_id: str | None = None) -> int:
        """Points in the collection's index (of one document): what deletes and re-ingests are checked by."""
        handle = self._open(collection)
        with handle.lock:
            _check_open(handle)
            return handle.index.count(document_id)

    def optimize(self, collection: str) -> None:
        """Index what was added since the last time (HNSW graph, payload indexes); searches wait meanwhile.
        Unindexed points are searched exactly, so this is about speed on large collections, not results."""
        handle = self._open(collection)
        with handle.writing, handle.lock:
            _check_open(handle)
            handle.index.optimize()  # on a server: nothing to do, it optimizes in the background

    # -- search ------------------------------------------------------------------------------------------------

    def retrieve(
        self,
        collection: str,
        query: str,
        identity: Identity,
        *,
        k: int = 10,
        filter: MetadataFilter | None = None,
        mode: Mode = "hybrid",
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query`` among those ``identity`` may read (access and ``filter`` are
        conditions of the search itself), best first. ``filter`` maps metadata keys to a value or a list of
        values (any of them); ``document_id`` and ``source`` can be filtered too."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidQuery("the query is empty")
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise InvalidQuery(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
        if mode not in ("hybrid", "dense", "bm25"):
            raise InvalidQuery(f"mode must be 'hybrid', 'dense' or 'bm25', got {mode!r}")
        conditions = where(identity, filter)
        handle = self._open(collection)
        settings = self.search
        depth = max(k, settings.rerank_depth) if self._rerank is not None else k
        vector = self._embedding_for(handle).vectors([query])[0].tolist() if mode != "bm25" else None
        index = handle.index
        searches: list[Search] = []
        weights: list[float] = []
        single = mode != "hybrid"
        limit = depth if single else max(depth, settings.prefetch)
        if vector is not None:
            searches.append(Search(vector, limit, conditions, settings.hnsw_ef, payload=single))
            weights.append(settings.dense_weight)
        if mode != "dense":
            sparse = index.bm25.embed_query(query)
            if sparse.indices:  # none: only stopwords or punctuation, BM25 has nothing to match
                searches.append(Search(sparse, limit, conditions, payload=single))
                weights.append(settings.bm25_weight)
        if not searches:
            return []
        with handle.lock:
            _check_open(handle)
            try:
                results = index.query(searches)
            except CollectionNotFound:  # dropped on the server from elsewhere
                _release(handle)
                raise
            if single:
                scored = [(p.id, p.score, p.payload) for p in results[0]]
            else:
                fused = _rrf(results, weights, settings.rrf_k)[:depth]
                payloads = index.payloads([point for point, _ in fused])
                scored = [(point, score, payloads[point]) for point, score in fused if point in payloads]
        hits = [_hit(score, payload) for _point, score, payload in scored]
        if self._rerank is not None and hits:
            hits = _reranked(self._rerank, query, hits)
        return hits[:k]

    # -- internals ---------------------------------------------------------------------------------------------

    def embedding(self) -> Embedding:
        """The embedding model (the built-in MiniLM is loaded on first call)."""
        with self._embedding_lock:
            if self._embedding is None:
                self._embedding = minilm_embedding()
            return self._embedding

    def _embedding_for(self, handle: _Handle) -> Embedding:
        embedding = self.embedding()
        if embedding.name != handle.info["embedding_model"] or embedding.dimensions != handle.info["dimensions"]:
            raise RetrievalError(
                f"collection {handle.name!r} was built with embedding model {handle.info['embedding_model']!r} "
                f"({handle.info['dimensions']} dimensions); this server embeds with {embedding.name!r} "
                f"({embedding.dimensions}): re-create the collection or configure that model"
            )
        return embedding

    def _open(self, name: str) -> _Handle:
        _check_name(name)
        with self._lock:
            handle = self._handles.get(name)
            if handle is not None and not handle.closed:  # closed: found dropped on the server, open it anew
                return handle
            if self._server is not None:
                handle = self._open_on_server(self._server, name)
                self._handles[name] = handle
                return handle
            path = self.root / name
            if not (path / "registry.sqlite").is_file():
                raise CollectionNotFound(name)
            registry = Registry(path / "registry.sqlite")
            info = registry.info()
            spec = CollectionSpec.model_validate(info["spec"])
            index = EdgeIndex.open(path / "index", spec)
            _recover(registry, index)
            handle = _Handle(name=name, path=path, info=info, spec=spec, index=index, registry=registry)
            self._handles[name] = handle
            return handle

    def _open_on_server(self, server: ServerCollections, name: str) -> _Handle:
        """The descriptor comes from Qdrant; the registry only where this is the collection's writer."""
        info = server.describe(name)
        if info is None:
            raise CollectionNotFound(name)
        spec = CollectionSpec.model_validate(info["spec"])
        index = server.index(name, spec)
        path = self.root / server.qualified(name)
        handle = _Handle(name=name, path=path, info=info, spec=spec, index=index, registry=None)
        _claim(handle)
        return handle

    def _registry(self, handle: _Handle) -> Registry:
        """The handle's registry (call under its lock); a clear error where this Retriever has none."""
        _check_open(handle)
        if handle.registry is None and self._server is not None:
            _claim(handle)  # the process that held it may have gone
        if handle.registry is None:
            raise RetrievalError(
                f"collection {handle.name!r} cannot be changed or listed from here: {handle.read_only}"
            )
        return handle.registry

    def _writable(self, handle: _Handle) -> Registry:
        """The registry, after checking (on a server) that the collection is still the one it writes."""
        registry = self._registry(handle)
        if self._server is not None:
            current = self._server.describe(handle.name)
            if current is None or current.get("writer") != handle.info.get("writer"):
                _release(handle)  # dropped (and maybe re-created) from elsewhere: the next call opens it anew
                raise CollectionNotFound(handle.name)
        return registry

    def _record_counts(self, handle: _Handle, registry: Registry) -> None:
        if self._server is not None:
            self._server.set_counts(handle.name, *registry.counts())

    def _plan(self, handle: _Handle, plan: _Planned, previous: DocumentInfo | None) -> None:
        plan.previous = previous
        spec = handle.spec
        chunks = _unique(chunk_document(plan.document, max_tokens=spec.chunk_max_tokens, overlap=spec.chunk_overlap))
        if not chunks:
            raise IngestError(plan.document.source or plan.document.id, "the document has no text to index")
        plan.chunks = chunks
        if previous is None:
            plan.status = "added"
        elif previous.content_hash != plan.content_hash:
            plan.status = "replaced"
        elif previous.meta_hash == plan.meta_hash:
            plan.status = "unchanged"
        elif [c for c, _ in previous.chunks] == [c.id for c in chunks]:
            plan.status = "updated"
            with handle.lock:
                _check_open(handle)
                stored = handle.index.stored(previous.point_ids)
            if len(stored) == len(chunks):
                plan.vectors = [(stored[p][0], stored[p][1]) for p in previous.point_ids]
            else:  # the index lost points (should not happen): embed again
                plan.status = "replaced"
        else:  # same content, different chunking (a newer chunker): embed again
            plan.status = "replaced"

    def _embed(
        self, embedding: Embedding, index: SearchIndex, planned: list[_Planned], progress: Progress | None
    ) -> int:
        todo = [(p, i) for p in planned if p.status in ("added", "replaced") for i in range(len(p.chunks))]
        for p in planned:
            if p.status in ("added", "replaced"):
                p.vectors = [([], None)] * len(p.chunks)
        todo.sort(key=lambda item: len(item[0].chunks[item[1]].text))  # similar lengths batch with little padding
        if progress is not None and todo:
            progress(0, len(todo))
        for start in range(0, len(todo), self._embed_batch):
            batch = todo[start : start + self._embed_batch]
            vectors = embedding.vectors([p.chunks[i].text for p, i in batch])
            for (p, i), vector in zip(batch, vectors, strict=True):
                p.vectors[i] = (vector.tolist(), index.bm25.embed_document(p.chunks[i].text))
            if progress is not None:
                progress(min(start + len(batch), len(todo)), len(todo))
        return len(todo)

    def _write(self, handle: _Handle, planned: list[_Planned]) -> None:
        changed = [p for p in planned if p.status != "unchanged"]
        if not changed:
            return
        now = time.time()
        points: list[IndexPoint] = []
        records: list[DocumentInfo] = []
        removed: list[str] = []
        for p in changed:
            generation = (p.previous.generation if p.previous else 0) + 1
            doc = p.document
            pairs = []
            base = {
                "document_id": doc.id,
                "title": doc.title,
                "source": doc.source,
                "metadata": dict(doc.metadata),
                **acl_payload(p.acl),
            }
            for chunk, (dense, sparse) in zip(p.chunks, p.vectors, strict=True):
                assert sparse is not None
                point = str(uuid.uuid5(_POINTS, f"{doc.id}\n{generation}\n{chunk.ordinal}"))
                payload = {
                    **base,
                    "chunk_id": chunk.id,
                    "text": chunk.text,
                    "heading": chunk.heading,
                    "start": chunk.start,
                    "end": chunk.end,
                }
                points.append(IndexPoint(point, dense, sparse, payload))
                pairs.append((chunk.id, point))
            if p.previous is not None:
                removed.extend(p.previous.point_ids)
            records.append(
                DocumentInfo(
                    id=doc.id,
                    content_hash=p.content_hash,
                    meta_hash=p.meta_hash,
                    generation=generation,
                    title=doc.title,
                    source=doc.source,
                    acl=p.acl,
                    metadata=dict(doc.metadata),
                    chunks=tuple(pairs),
                    updated_at=now,
                )
            )
        with handle.lock:
            registry = self._writable(handle)
            added = [pt.id for pt in points]
            entry = registry.begin(added, removed)
            try:
                handle.index.upsert(points)
                handle.index.flush()
                registry.commit(entry, records, [])
            except BaseException:  # nothing was committed: take the new points out again
                handle.index.delete(added)
                handle.index.flush()
                registry.finish(entry)
                raise
            handle.index.delete(removed)
            handle.index.flush()
            registry.finish(entry)
            self._record_counts(handle, registry)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RetrievalError(
            f"collection name {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )


def _check_open(handle: _Handle) -> None:
    if handle.closed:
        raise CollectionNotFound(handle.name)


def _release(handle: _Handle) -> None:
    """Close the handle's index and registry, and give up its writer lock (once)."""
    if handle.closed:
        return
    handle.closed = True
    handle.index.close()
    if handle.registry is not None:
        handle.registry.close()
    if handle.writer_lock is not None:
        os.close(handle.writer_lock)  # releases the lock
        handle.writer_lock = None


def _claim(handle: _Handle) -> None:
    """Make the handle of a server collection its writer, when this data directory holds the collection's
    registry and no other process has it; otherwise say why in ``handle.read_only``."""
    path = handle.path
    if not (path / "registry.sqlite").is_file():
        handle.read_only = (
            "it is written by the data directory that created it (its registry is not in this one): "
            "ingest and delete there"
        )
        return
    fd = os.open(path / "writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        handle.read_only = (
            "another process (or Retriever) holds this data directory's registry of it: go through it (the gateway)"
        )
        return
    registry = Registry(path / "registry.sqlite")
    if registry.info().get("writer") != handle.info.get("writer"):
        registry.close()
        os.close(fd)
        handle.read_only = (
            "the registry in this data directory belongs to an earlier collection of that name; "
            "it is written by the data directory that created this one"
        )
        return
    _recover(registry, handle.index)
    handle.registry = registry
    handle.writer_lock = fd
    handle.read_only = ""


def _recover(registry: Registry, index: SearchIndex) -> None:
    """Finish the writes a crash interrupted (see ``_registry``)."""
    for entry, state, added, removed in registry.unfinished():
        index.delete(added if state == "pending" else removed)
        index.flush()
        registry.finish(entry)


def _digest(value: object) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _validate(items: Sequence[tuple[Document, AccessList]]) -> list[_Planned]:
    planned: list[_Planned] = []
    seen: set[str] = set()
    for document, acl in items:
        if not isinstance(document, Document) or not isinstance(acl, AccessList):
            raise TypeError("items are (Document, AccessList) pairs")
        if not document.id or not isinstance(document.id, str):
            raise IngestError(document.source or "document", "a document needs a non-empty string id")
        if document.id in seen:
            raise IngestError(document.source or document.id, f"document id {document.id!r} given twice")
        seen.add(document.id)
        try:
            metadata = orjson.dumps(document.metadata, option=orjson.OPT_SORT_KEYS)
        except TypeError as exc:
            raise IngestError(document.source or document.id, f"metadata is not JSON: {exc}") from None
        content = _digest([document.title, document.text, [list(s) for s in document.sections]])
        access = [sorted(acl.principals), sorted(acl.groups), sorted(acl.tenants)]
        meta = _digest([access, metadata.decode(), document.source])
        planned.append(_Planned(document, acl, content, meta, None, "added"))
    return planned


def _unique(chunks: list[Chunk]) -> list[Chunk]:
    """Drop chunks whose text repeats an earlier chunk of the same document."""
    seen: set[str] = set()
    kept = []
    for chunk in chunks:
        if chunk.text not in seen:
            seen.add(chunk.text)
            kept.append(chunk)
    return kept


def _rrf(results: list[list[Scored]], weights: list[float], k: float) -> list[tuple[str, float]]:
    scores: dict[str, float] = {}
    for points, weight in zip(results, weights, strict=True):
        for rank, point in enumerate(points, start=1):
            scores[point.id] = scores.get(point.id, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def _hit(score: float, payload: Mapping[str, Any]) -> Hit:
    metadata = {
        **payload.get("metadata", {}),
        "title": payload.get("title", ""),
        "source": payload.get("source", ""),
        "heading": payload.get("heading", ""),
        "start": payload.get("start", 0),
        "end": payload.get("end", 0),
    }
    return Hit(
        document_id=payload["document_id"],
        chunk_id=payload["chunk_id"],
        score=float(score),
        text=payload["text"],
        metadata=metadata,
    )


def _reranked(rerank: Reranker, query: str, hits: list[Hit]) -> list[Hit]:
    given = {h.chunk_id for h in hits}
    out = rerank(query, list(hits))
    unknown = [h.chunk_id for h in out if h.chunk_id not in given]
    if unknown:
        raise RetrievalError(f"the reranker returned chunks it was not given: {unknown[:3]}")
    return out
