"""Collections on a Qdrant server through qdrant-client, tested on its local mode: the same client calls and
filter semantics on an exact in-process search. What that does not prove: the network (timeouts, retries, TLS,
API keys), sharding and replication (IDF is per shard on a cluster), the server's HNSW and payload indexes
(local mode ignores them), and several processes on one Qdrant (local mode is one process; the replica tests
share one client instead)."""

from __future__ import annotations

import hashlib
import itertools
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError
from qdrant_client import QdrantClient, models

from goldenpath.rag import (
    AccessList,
    CollectionExists,
    CollectionNotFound,
    CollectionSpec,
    Document,
    DocumentNotFound,
    Embedding,
    Identity,
    RetrievalError,
    Retriever,
)
from goldenpath.rag._index import bm25_model
from goldenpath.rag._server_index import QdrantServer
from tests.rag.embedders import DIMENSIONS, hashing_embedding, hashing_vectors

ENG = AccessList(groups=frozenset({"eng"}))
READER = Identity("u1", "t1", frozenset({"eng"}))
ADMIN = Identity("root", "t0", is_admin=True)


@pytest.fixture
def client() -> QdrantClient:
    return QdrantClient(":memory:")


def test_settings_name_one_place() -> None:
    assert QdrantServer(url="http://qdrant:6333", api_key="k").prefix == "gp_"
    assert "k" not in repr(QdrantServer(url="http://qdrant:6333", api_key="k"))
    for bad in ({}, {"url": "http://q:6333", "path": "/tmp/q"}, {"path": ":memory:", "api_key": "k"}):
        with pytest.raises(ValidationError):
            QdrantServer(**bad)
    with pytest.raises(ValidationError):
        QdrantServer(path=":memory:", prefix="a/b")
    with pytest.raises(ValidationError):
        QdrantServer(path=":memory:", shards=2)  # type: ignore[call-arg]


def test_a_collection_is_a_qdrant_collection_with_its_descriptor(tmp_path: Path, client: QdrantClient) -> None:
    r = Retriever(tmp_path, hashing_embedding(), qdrant=client)
    info = r.create_collection("docs", tenant="t1", spec=CollectionSpec(bm25_k1=1.5))
    assert (info.name, info.tenant, info.embedding_model, info.dimensions, info.spec.bm25_k1) == (
        "docs",
        "t1",
        "test-hashing-32",
        DIMENSIONS,
        1.5,
    )
    config = client.get_collection("gp_docs").config
    assert config.params.sparse_vectors is not None
    assert config.params.sparse_vectors["bm25"].modifier == models.Modifier.IDF
    assert isinstance(config.params.vectors, dict) and config.params.vectors["dense"].size == DIMENSIONS
    assert (config.metadata or {})["goldenpath"]["tenant"] == "t1"

    with pytest.raises(CollectionExists):
        r.create_collection("docs", tenant="t1")
    client.create_collection("gp_foreign", vectors_config={})  # under the prefix, not goldenpath's
    with pytest.raises(CollectionExists):
        r.create_collection("foreign", tenant="t1")
    r.create_collection("more", tenant="t2")
    assert [c.name for c in r.list_collections()] == ["docs", "more"]
    assert [c.name for c in r.list_collections(tenant="t2")] == ["more"]
    r.delete_collection("more")
    assert not client.collection_exists("gp_more")
    assert not (tmp_path / "rag-qdrant" / "gp_more").exists()
    with pytest.raises(CollectionNotFound):
        r.get_collection("more")


def test_ingest_retrieve_replace_and_delete(tmp_path: Path, client: QdrantClient) -> None:
    r = Retriever(tmp_path, hashing_embedding(), qdrant=client)
    r.create_collection("docs", tenant="t1", spec=CollectionSpec(chunk_max_tokens=64, chunk_overlap=8))
    long = "\n\n".join(
        f"Paragraph {i} is about topic {i} and rivers, with words to fill it out. " * 5 for i in range(5)
    )
    docs = [
        Document(id="long", text=long, metadata={"lang": "en"}),
        Document(id="de", text="Ein Bericht über Flüsse und rivers", metadata={"lang": "de"}),
        Document(id="run", text="The runners were running quickly"),
    ]
    report = r.ingest("docs", docs, acl=ENG)
    chunks = report.results[0].chunks
    assert chunks > 3
    assert r.count_points("docs", "long") == chunks
    assert r.count_points("docs") == chunks + 2
    assert (r.get_collection("docs").documents, r.get_collection("docs").chunks) == (3, chunks + 2)

    assert [h.document_id for h in r.retrieve("docs", "run", READER, mode="bm25")] == ["run"]  # stemmed
    assert r.retrieve("docs", "the were", READER, mode="bm25") == []  # only stopwords
    assert {h.document_id for h in r.retrieve("docs", "rivers", READER, k=50, mode="dense")} == {"long", "de", "run"}
    hybrid = r.retrieve("docs", "rivers topic", READER, k=50, filter={"lang": ["de", "fr"]})
    assert [h.document_id for h in hybrid] == ["de"]
    assert hybrid[0].metadata["lang"] == "de" and hybrid[0].chunk_id == "de#0"
    assert r.retrieve("docs", "rivers", Identity("u2", "t1")) == []

    report = r.ingest("docs", [Document(id="long", text="now it is short")], acl=ENG)
    assert (report.results[0].status, report.results[0].chunks) == ("replaced", 1)
    assert r.count_points("docs", "long") == 1
    assert client.count("gp_docs", exact=True).count == 3

    ops = AccessList(groups=frozenset({"ops"}))
    report = r.ingest("docs", [Document(id="run", text="The runners were running quickly")], acl=ops)
    assert (report.results[0].status, report.chunks_embedded) == ("updated", 0)  # vectors read back from Qdrant
    assert r.retrieve("docs", "run", READER, mode="bm25") == []
    assert [h.document_id for h in r.retrieve("docs", "run", Identity("u3", "t9", frozenset({"ops"})))] == ["run"]

    assert r.delete_document("docs", "long") == 1
    assert r.count_points("docs", "long") == 0
    assert client.count("gp_docs", exact=True).count == 2
    with pytest.raises(DocumentNotFound):
        r.delete_document("docs", "long")
    assert r.document_ids("docs") == ["de", "run"]
    r.close()


def test_points_carry_the_embedded_engines_ids_payload_and_bm25_vectors(tmp_path: Path, client: QdrantClient) -> None:
    docs = [
        (Document(id="a", text="Alpha rivers flow.\n\nBravo deltas spread.", title="A", metadata={"year": 2020}), ENG),
        (Document(id="b", text="Charlie floods", source="b.md"), AccessList(principals=frozenset({"u9"}))),
    ]
    edge = Retriever(tmp_path / "edge", hashing_embedding())
    server = Retriever(tmp_path / "server", hashing_embedding(), qdrant=client)
    for r in (edge, server):
        r.create_collection("c", tenant="t1")
        r.upsert_documents("c", docs)
    for doc, acl in docs:
        assert edge.get_document("c", doc.id).chunks == server.get_document("c", doc.id).chunks
        ids = server.get_document("c", doc.id).point_ids
        records = client.retrieve("gp_c", ids, with_payload=True, with_vectors=True)
        bm25 = bm25_model(CollectionSpec())  # the collection's, as the embedded engine computes them
        for record in records:
            payload = record.payload or {}
            assert (payload["acl_principals"], payload["acl_groups"], payload["acl_tenants"]) == (
                sorted(acl.principals),
                sorted(acl.groups),
                sorted(acl.tenants),
            )
            assert (payload["document_id"], payload["title"], payload["source"], payload["metadata"]) == (
                doc.id,
                doc.title,
                doc.source,
                dict(doc.metadata),
            )
            assert isinstance(record.vector, dict)
            sparse = record.vector["bm25"]
            assert isinstance(sparse, models.SparseVector)
            expected = bm25.embed_document(payload["text"])
            assert dict(zip(sparse.indices, sparse.values, strict=True)) == pytest.approx(
                dict(zip(expected.indices, expected.values, strict=True))
            )
    edge_hits = edge.retrieve("c", "rivers floods", ADMIN, k=10, mode="dense")
    server_hits = server.retrieve("c", "rivers floods", ADMIN, k=10, mode="dense")
    assert [(h.chunk_id, h.text, dict(h.metadata)) for h in edge_hits] == [
        (h.chunk_id, h.text, dict(h.metadata)) for h in server_hits
    ]
    edge.close()
    server.close()


def _word_vector(word: str) -> npt.NDArray[np.float64]:
    seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(64)


def gaussian_vectors(texts: list[str]) -> npt.NDArray[np.float32]:
    """A random-projection bag of words: unlike the 32-bucket hashing embedder, distinct texts almost never tie."""
    out = np.zeros((len(texts), 64))
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row] += _word_vector(word)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


BRANCHES: tuple[Literal["dense", "bm25"], ...] = ("dense", "bm25")
MODES: tuple[Literal["dense", "bm25", "hybrid"], ...] = (*BRANCHES, "hybrid")
VOCABULARY = [
    *("river", "delta", "flood", "basin", "sediment", "current", "estuary", "bank", "channel", "water", "rain"),
    *("storm", "levee", "harbour", "tide", "marsh", "erosion", "bridge", "valley", "glacier", "lake", "canal"),
    *("dam", "reservoir", "drought", "irrigation"),
]


def test_both_engines_rank_the_same_documents(tmp_path: Path, client: QdrantClient) -> None:
    """Same points, same BM25 vectors, same IDF formula, same fusion: the same top-k in every mode, searched as
    a caller who may read two thirds of the corpus, with and without a metadata filter."""
    rng = random.Random(7)
    lengths = list(range(4, 64))  # all different, so that BM25 scores do not tie either
    rng.shuffle(lengths)
    docs = [
        (
            Document(
                id=f"d{i:02d}",
                text=" ".join(rng.choice(VOCABULARY) for _ in range(length)),
                metadata={"part": i % 3},
            ),
            AccessList(groups=frozenset({f"g{i % 3}"})),
        )
        for i, length in enumerate(lengths)
    ]
    caller = Identity("u", "t", frozenset({"g0", "g1"}))
    embedding = Embedding("gaussian-64", 64, gaussian_vectors)
    edge = Retriever(tmp_path / "edge", embedding)
    server = Retriever(tmp_path / "server", embedding, qdrant=client)
    for r in (edge, server):
        r.create_collection("c", tenant="t")
        r.upsert_documents("c", docs)
    queries = ["river flood", "glacier lake dam", "storm tide harbour", "drought irrigation reservoir water", "erosion"]
    compared = 0
    for query in queries:
        for where in (None, {"part": [0, 2]}):
            for branch in BRANCHES:  # no ties within a branch, so fused ranks cannot depend on tie order
                scores = [h.score for h in edge.retrieve("c", query, caller, k=100, filter=where, mode=branch)]
                assert all(a - b > 1e-6 for a, b in itertools.pairwise(scores)), (query, branch)
            for mode in MODES:
                ours = edge.retrieve("c", query, caller, k=10, filter=where, mode=mode)
                theirs = server.retrieve("c", query, caller, k=10, filter=where, mode=mode)
                assert [h.document_id for h in ours] == [h.document_id for h in theirs], (query, where, mode)
                assert [h.score for h in ours] == pytest.approx([h.score for h in theirs], abs=1e-5)
                assert ours, (query, where, mode)
                compared += 1
    assert compared == 30
    edge.close()
    server.close()


def test_other_replicas_search_and_only_the_writer_changes(tmp_path: Path, client: QdrantClient) -> None:
    writer = Retriever(tmp_path / "a", hashing_embedding(), qdrant=client)
    writer.create_collection("docs", tenant="t1")
    writer.ingest("docs", [Document(id="x", text="alpha bravo"), Document(id="y", text="alpha charlie")], acl=ENG)

    replica = Retriever(tmp_path / "b", hashing_embedding(), qdrant=client)  # another gateway, empty data dir
    assert [(c.name, c.tenant, c.documents, c.chunks) for c in replica.list_collections()] == [("docs", "t1", 2, 2)]
    assert {h.document_id for h in replica.retrieve("docs", "alpha", READER)} == {"x", "y"}
    assert replica.count_points("docs", "x") == 1
    for change in (
        lambda: replica.ingest("docs", [Document(id="z", text="zulu")], acl=ENG),
        lambda: replica.delete_document("docs", "x"),
        lambda: replica.document_ids("docs"),
    ):
        with pytest.raises(RetrievalError, match="written by the data directory that created it"):
            change()

    successor = Retriever(tmp_path / "a", hashing_embedding(), qdrant=client)  # the writer's data dir, held by it
    assert len(successor.retrieve("docs", "alpha", READER)) == 2
    with pytest.raises(RetrievalError, match="another process"):
        successor.ingest("docs", [Document(id="z", text="zulu")], acl=ENG)

    writer.delete_document("docs", "y")
    assert replica.get_collection("docs").documents == 1  # recorded by the writer on the collection
    writer.close()  # the lock goes with it: the next write takes it over
    successor.ingest("docs", [Document(id="z", text="alpha zulu")], acl=ENG)
    assert successor.document_ids("docs") == ["x", "z"]
    assert {h.document_id for h in replica.retrieve("docs", "alpha", READER)} == {"x", "z"}

    replica.delete_collection("docs")  # any replica may drop a collection ...
    replica.create_collection("docs", tenant="t2")  # ... and a re-created one is written where it was created
    with pytest.raises(CollectionNotFound):  # the successor's registry is the dropped one's: nothing mixes in
        successor.ingest("docs", [Document(id="old", text="alpha old")], acl=ENG)
    assert client.count("gp_docs", exact=True).count == 0
    replica.ingest("docs", [Document(id="new", text="alpha new")], acl=ENG)
    assert [h.document_id for h in successor.retrieve("docs", "alpha", READER)] == ["new"]
    with pytest.raises(RetrievalError, match="earlier collection of that name"):
        successor.ingest("docs", [Document(id="old", text="alpha old")], acl=ENG)
    assert [c.tenant for c in successor.list_collections()] == ["t2"]
    replica.delete_collection("docs")
    with pytest.raises(CollectionNotFound):
        successor.retrieve("docs", "alpha", READER)
    successor.close()
    replica.close()


CRASH = textwrap.dedent(
    """
    import os, sys
    from goldenpath.rag import AccessList, Document, Retriever
    from goldenpath.rag._registry import Registry
    from goldenpath.rag._server_index import QdrantServer
    from tests.rag.embedders import hashing_embedding

    def crash(*args):
        os._exit(3)  # the process dies after the new points reached Qdrant, before the registry commit

    Registry.commit = crash
    r = Retriever(sys.argv[1], hashing_embedding(), qdrant=QdrantServer(path=sys.argv[2]))
    r.ingest("docs", [Document(id="a", text="replacement text"), Document(id="b", text="brand new")],
             acl=AccessList(groups=frozenset({"eng"})))
    """
)


def test_a_crash_mid_write_is_rolled_back_on_the_server_too(tmp_path: Path) -> None:
    data, qdrant = tmp_path / "data", str(tmp_path / "qdrant")
    r = Retriever(data, hashing_embedding(), qdrant=QdrantServer(path=qdrant))
    r.create_collection("docs", tenant="t1")
    r.ingest("docs", [Document(id="a", text="original text")], acl=ENG)
    r.close()
    root = Path(__file__).parents[2]
    done = subprocess.run([sys.executable, "-c", CRASH, str(data), qdrant], cwd=root, check=False)
    assert done.returncode == 3
    probe = QdrantClient(path=qdrant)
    assert probe.count("gp_docs", exact=True).count == 3  # the crashed write's points are on the server
    probe.close()
    again = Retriever(data, hashing_embedding(), qdrant=QdrantServer(path=qdrant))
    assert again.count_points("docs") == 1
    assert again.document_ids("docs") == ["a"]
    assert [h.text for h in again.retrieve("docs", "text", READER)] == ["original text"]
    again.close()


def test_a_collection_is_searched_only_with_its_embedding_model(tmp_path: Path, client: QdrantClient) -> None:
    Retriever(tmp_path / "a", hashing_embedding(), qdrant=client).create_collection("docs", tenant="t1")
    other = Retriever(tmp_path / "b", Embedding("other-model", DIMENSIONS, hashing_vectors), qdrant=client)
    with pytest.raises(RetrievalError, match="was built with embedding model 'test-hashing-32'"):
        other.retrieve("docs", "hello", READER)
