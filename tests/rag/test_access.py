"""Access control is a condition of the search: random documents, access lists and callers, on the embedded
engine and on the Qdrant client path."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import pytest
import qdrant_edge as qe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goldenpath.rag import AccessList, Document, Identity
from tests.rag.backends import BACKENDS, open_retriever

PRINCIPALS = [f"p{i}" for i in range(6)]
GROUPS = [f"g{i}" for i in range(5)]
TENANTS = [f"t{i}" for i in range(3)]
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
BM25 = qe.Bm25(qe.Bm25Config(language="english"))


def subsets(pool: list[str]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(pool), max_size=3)


access_lists = st.builds(AccessList, principals=subsets(PRINCIPALS), groups=subsets(GROUPS), tenants=subsets(TENANTS))
identities = st.builds(
    Identity,
    principal=st.sampled_from(PRINCIPALS),
    tenant=st.sampled_from(TENANTS),
    groups=subsets(GROUPS),
    is_admin=st.sampled_from([False, False, False, True]),
)
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)


@dataclass(frozen=True)
class Case:
    documents: list[tuple[Document, AccessList]]
    callers: list[Identity]
    queries: list[str]
    k: int


cases = st.builds(
    Case,
    documents=st.lists(st.tuples(texts, access_lists), min_size=1, max_size=25).map(
        lambda items: [(Document(id=f"d{i}", text=text), acl) for i, (text, acl) in enumerate(items)]
    ),
    callers=st.lists(identities, min_size=1, max_size=4),
    queries=st.lists(texts, min_size=1, max_size=3),
    k=st.integers(1, 12),
)


def bm25_matches(query: str, text: str) -> bool:
    return bool(set(BM25.embed_query(query).indices) & set(BM25.embed_document(text).indices))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases)
def test_no_hit_outside_the_callers_rights_and_top_k_is_full(backend: str, case: Case) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        retriever = open_retriever(backend, tmp)
        retriever.create_collection("c", tenant="t0")
        retriever.upsert_documents("c", case.documents)
        by_id = {d.id: (d, acl) for d, acl in case.documents}
        for caller in case.callers:
            readable = [d for d, acl in case.documents if acl.allows(caller)]
            for query in case.queries:
                for mode in ("hybrid", "dense", "bm25"):
                    hits = retriever.retrieve("c", query, caller, k=case.k, mode=mode)
                    assert all(by_id[h.document_id][1].allows(caller) for h in hits), (caller, mode)
                    assert len({h.chunk_id for h in hits}) == len(hits)
                    # every chunk has a vector, so every readable one is a dense candidate
                    matching = [d for d in readable if mode != "bm25" or bm25_matches(query, d.text)]
                    assert len(hits) == min(case.k, len(matching)), (caller, mode, query)
        retriever.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_admin_reads_everything_and_an_empty_access_list_only_admins(backend: str, tmp_path: object) -> None:
    retriever = open_retriever(backend, str(tmp_path))
    retriever.create_collection("c", tenant="t0")
    retriever.upsert_documents(
        "c",
        [
            (Document(id="secret", text="alpha bravo"), AccessList()),
            (Document(id="shared", text="alpha charlie"), AccessList(groups=frozenset({"g1"}))),
        ],
    )
    member = Identity("p1", "t1", frozenset({"g1"}))
    admin = Identity("root", "t9", is_admin=True)
    assert [h.document_id for h in retriever.retrieve("c", "alpha", member, k=5)] == ["shared"]
    assert {h.document_id for h in retriever.retrieve("c", "alpha", admin, k=5)} == {"secret", "shared"}
    assert retriever.retrieve("c", "alpha", Identity("p2", "t1"), k=5) == []
    retriever.close()
