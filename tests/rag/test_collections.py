"""Collections on disk: create/list/delete, ingest, re-ingest, dedup, delete, and writes that fail or crash."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from goldenpath.rag import (
    AccessList,
    CollectionExists,
    CollectionNotFound,
    CollectionSpec,
    Document,
    DocumentNotFound,
    Embedding,
    Identity,
    IngestError,
    RetrievalError,
    Retriever,
    chunk_document,
)
from tests.rag.embedders import DIMENSIONS, hashing_embedding, hashing_vectors

ENG = AccessList(groups=frozenset({"eng"}))
READER = Identity("u1", "t1", frozenset({"eng"}))
LONG = "\n\n".join(
    f"Paragraph {i} tells about topic {i} at some length, with words to fill it. " * 12 for i in range(6)
)


@pytest.fixture
def retriever(tmp_path: Path) -> Retriever:
    r = Retriever(tmp_path, hashing_embedding())
    r.create_collection("docs", tenant="t1", spec=CollectionSpec(chunk_max_tokens=128, chunk_overlap=16))
    return r


def test_collections_are_created_listed_reopened_and_deleted(tmp_path: Path) -> None:
    r = Retriever(tmp_path, hashing_embedding())
    info = r.create_collection("a", tenant="t1")
    assert (info.name, info.tenant, info.embedding_model, info.dimensions) == ("a", "t1", "test-hashing-32", DIMENSIONS)
    r.create_collection("b", tenant="t2")
    with pytest.raises(CollectionExists):
        r.create_collection("a", tenant="t1")
    with pytest.raises(RetrievalError, match="collection name"):
        r.create_collection("../escape", tenant="t1")
    r.ingest("a", [Document(id="x", text="hello world")], acl=ENG)
    assert [c.name for c in r.list_collections()] == ["a", "b"]
    assert [c.name for c in r.list_collections(tenant="t2")] == ["b"]
    r.close()

    again = Retriever(tmp_path, hashing_embedding())
    assert again.get_collection("a").documents == 1
    assert [h.document_id for h in again.retrieve("a", "hello", READER)] == ["x"]
    again.delete_collection("a")
    with pytest.raises(CollectionNotFound):
        again.get_collection("a")
    with pytest.raises(CollectionNotFound):
        again.retrieve("a", "hello", READER)
    assert [c.name for c in again.list_collections()] == ["b"]
    assert sorted(p.name for p in (tmp_path / "rag").iterdir()) == ["b"]


def test_a_collection_is_searched_only_with_its_embedding_model(tmp_path: Path) -> None:
    Retriever(tmp_path, hashing_embedding()).create_collection("a", tenant="t1")
    other = Embedding("other-model", DIMENSIONS, hashing_vectors)
    with pytest.raises(RetrievalError, match="was built with embedding model 'test-hashing-32'"):
        Retriever(tmp_path, other).retrieve("a", "hello", READER)


def test_reingest_replaces_every_chunk_and_delete_removes_them_all(retriever: Retriever) -> None:
    report = retriever.ingest(
        "docs", [Document(id="long", text=LONG), Document(id="short", text="a short one")], acl=ENG
    )
    long_chunks = report.results[0].chunks
    assert long_chunks > 3
    assert retriever.count_points("docs", "long") == long_chunks
    assert retriever.count_points("docs") == long_chunks + 1

    report = retriever.ingest("docs", [Document(id="long", text="now it is short")], acl=ENG)
    assert (report.results[0].status, report.results[0].chunks) == ("replaced", 1)
    assert retriever.count_points("docs", "long") == 1
    assert retriever.count_points("docs") == 2
    assert [h.text for h in retriever.retrieve("docs", "topic paragraph", READER, k=10) if h.document_id == "long"] == [
        "now it is short"
    ]

    assert retriever.delete_document("docs", "long") == 1
    assert retriever.count_points("docs", "long") == 0
    assert retriever.count_points("docs") == 1
    assert all(h.document_id != "long" for h in retriever.retrieve("docs", "short", READER, k=10))
    with pytest.raises(DocumentNotFound):
        retriever.delete_document("docs", "long")
    with pytest.raises(DocumentNotFound):
        retriever.get_document("docs", "long")


def test_identical_content_is_a_no_op_and_a_new_access_list_reuses_the_vectors(tmp_path: Path) -> None:
    calls: list[int] = []

    def counting(texts: list[str]) -> npt.NDArray[np.float32]:
        calls.append(len(texts))
        return hashing_vectors(texts)

    r = Retriever(tmp_path, Embedding("test-hashing-32", DIMENSIONS, counting))
    r.create_collection("docs", tenant="t1")
    doc = Document(id="d", text="alpha bravo charlie", title="Alphabet", metadata={"lang": "en"})
    assert r.ingest("docs", [doc], acl=ENG).results[0].status == "added"
    embedded = sum(calls)
    report = r.ingest("docs", [doc], acl=ENG)
    assert (report.results[0].status, report.chunks_embedded) == ("unchanged", 0)
    assert sum(calls) == embedded

    ops = AccessList(groups=frozenset({"ops"}))
    report = r.ingest("docs", [doc], acl=ops)
    assert (report.results[0].status, report.chunks_embedded) == ("updated", 0)
    assert sum(calls) == embedded
    assert r.retrieve("docs", "alpha", READER) == []
    hits = r.retrieve("docs", "alpha", Identity("u2", "t1", frozenset({"ops"})))
    assert [(h.document_id, h.metadata["title"], h.metadata["lang"]) for h in hits] == [("d", "Alphabet", "en")]
    assert r.count_points("docs") == 1
    assert r.get_document("docs", "d").acl == ops


def test_repeated_chunks_of_a_document_are_indexed_once(retriever: Retriever) -> None:
    paragraph = "The same boilerplate paragraph appears again and again in this file. " * 6
    doc = Document(id="dup", text="\n\n".join([paragraph] * 5 + ["A different ending."]))
    chunks = chunk_document(doc, max_tokens=128, overlap=16)  # the collection's chunking
    distinct = {c.text for c in chunks}
    assert len(distinct) < len(chunks)
    report = retriever.ingest("docs", [doc], acl=ENG)
    texts = [h.text for h in retriever.retrieve("docs", "boilerplate", READER, k=20)]
    assert report.results[0].chunks == retriever.count_points("docs", "dup") == len(distinct)
    assert sorted(texts) == sorted(distinct)


def test_bad_documents_are_refused_before_anything_is_written(retriever: Retriever) -> None:
    retriever.ingest("docs", [Document(id="keep", text="keep me")], acl=ENG)
    with pytest.raises(IngestError, match="given twice"):
        retriever.ingest("docs", [Document(id="a", text="x"), Document(id="a", text="y")], acl=ENG)
    with pytest.raises(IngestError, match="no text"):
        retriever.ingest("docs", [Document(id="b", text="fine"), Document(id="c", text="   ", source="c.txt")], acl=ENG)
    with pytest.raises(IngestError, match="metadata is not JSON"):
        retriever.ingest("docs", [Document(id="d", text="x", metadata={"when": object()})], acl=ENG)
    assert retriever.document_ids("docs") == ["keep"]
    assert retriever.count_points("docs") == 1


def test_an_embedding_failure_mid_ingest_leaves_the_collection_as_it_was(tmp_path: Path) -> None:
    batches: list[int] = []

    def flaky(texts: list[str]) -> npt.NDArray[np.float32]:
        batches.append(len(texts))
        if len(batches) == 3:
            raise RuntimeError("embedding upstream unavailable")
        return hashing_vectors(texts)

    r = Retriever(tmp_path, Embedding("test-hashing-32", DIMENSIONS, flaky), embed_batch=2)
    r.create_collection("docs", tenant="t1")
    r.ingest("docs", [Document(id="old", text="the old version")], acl=ENG)  # batch 1
    before = [(h.chunk_id, h.text) for h in r.retrieve("docs", "version", READER, k=50)]
    docs = [Document(id="old", text="the new version")] + [Document(id=f"n{i}", text=f"new {i}") for i in range(5)]
    with pytest.raises(RuntimeError, match="unavailable"):
        r.ingest("docs", docs, acl=ENG)  # batch 2 passes, batch 3 fails
    assert r.document_ids("docs") == ["old"]
    assert r.count_points("docs") == 1
    assert [(h.chunk_id, h.text) for h in r.retrieve("docs", "version", READER, k=50)] == before


def test_an_index_write_failure_is_rolled_back(retriever: Retriever, monkeypatch: pytest.MonkeyPatch) -> None:
    from goldenpath.rag._registry import Registry

    retriever.ingest("docs", [Document(id="a", text="first text")], acl=ENG)

    def broken(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Registry, "commit", broken)
    with pytest.raises(OSError, match="disk full"):
        retriever.ingest("docs", [Document(id="a", text="second text"), Document(id="b", text="more")], acl=ENG)
    assert retriever.count_points("docs") == 1
    assert [h.text for h in retriever.retrieve("docs", "text", READER)] == ["first text"]


CRASH = textwrap.dedent(
    """
    import os, sys
    from goldenpath.rag import AccessList, Document, Retriever
    from goldenpath.rag._registry import Registry
    from tests.rag.embedders import hashing_embedding

    def crash(*args):
        os._exit(3)  # the process dies after the new points reached the index, before the registry commit

    Registry.commit = crash
    r = Retriever(sys.argv[1], hashing_embedding())
    r.ingest("docs", [Document(id="a", text="replacement text"), Document(id="b", text="brand new")],
             acl=AccessList(groups=frozenset({"eng"})))
    """
)


def test_a_crash_mid_write_is_rolled_back_when_the_collection_opens(tmp_path: Path) -> None:
    r = Retriever(tmp_path, hashing_embedding())
    r.create_collection("docs", tenant="t1")
    r.ingest("docs", [Document(id="a", text="original text")], acl=ENG)
    r.close()
    root = Path(__file__).parents[2]
    done = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path)], cwd=root, check=False)
    assert done.returncode == 3
    again = Retriever(tmp_path, hashing_embedding())
    assert again.count_points("docs") == 1
    assert again.document_ids("docs") == ["a"]
    assert [h.text for h in again.retrieve("docs", "text", READER)] == ["original text"]


def test_searches_never_see_a_half_written_document(retriever: Retriever) -> None:
    versions = [f"version {v} " + " ".join(f"part{v}x{i}" for i in range(400)) for v in range(2)]
    retriever.ingest("docs", [Document(id="doc", text=versions[0])], acl=ENG)
    chunks = retriever.count_points("docs")
    stop = threading.Event()
    seen: list[set[str]] = []
    errors: list[BaseException] = []

    def search() -> None:
        try:
            while not stop.is_set():
                hits = retriever.retrieve("docs", "version part", READER, k=100)
                seen.append({m.group(1) for h in hits if (m := re.search(r"part(\d)x", h.text))})
                assert len(hits) == chunks
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=search)
    thread.start()
    for n in range(6):
        retriever.ingest("docs", [Document(id="doc", text=versions[(n + 1) % 2])], acl=ENG)
    stop.set()
    thread.join()
    assert not errors
    assert seen and all(len(versions_seen) == 1 for versions_seen in seen)


def test_a_collection_open_elsewhere_is_refused_clearly(retriever: Retriever, tmp_path: Path) -> None:
    retriever.ingest("docs", [Document(id="a", text="x")], acl=ENG)
    with pytest.raises(RetrievalError, match="open in another process"):
        Retriever(tmp_path, hashing_embedding()).retrieve("docs", "x", READER)
