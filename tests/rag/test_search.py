"""Searching: modes, metadata filters in the search, what a hit carries, bad requests, the rerank seam."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldenpath.rag import (
    AccessList,
    Document,
    Hit,
    Identity,
    InvalidFilter,
    InvalidQuery,
    RetrievalError,
    Retriever,
    minilm_embedding,
)
from tests.rag.embedders import hashing_embedding

EVERYONE = AccessList(tenants=frozenset({"t1"}))
READER = Identity("u1", "t1")


@pytest.fixture
def retriever(tmp_path: Path) -> Retriever:
    r = Retriever(tmp_path, hashing_embedding())
    r.create_collection("docs", tenant="t1")
    r.ingest(
        "docs",
        [
            Document(
                id=f"{lang}-{n}",
                text=f"report {n} about rivers",
                title=f"R{n}",
                source=f"{lang}/{n}.md",
                metadata={"lang": lang, "year": 2020 + n},
            )
            for lang in ("en", "de", "fr")
            for n in range(4)
        ],
        acl=EVERYONE,
    )
    return r


def test_a_metadata_filter_is_applied_inside_the_search(retriever: Retriever) -> None:
    hits = retriever.retrieve("docs", "rivers", READER, k=3, filter={"lang": "de"})
    assert len(hits) == 3 and all(h.metadata["lang"] == "de" for h in hits)  # full k from the allowed subset
    hits = retriever.retrieve("docs", "rivers", READER, k=20, filter={"lang": ["de", "fr"], "year": [2021, 2023]})
    assert sorted(h.document_id for h in hits) == ["de-1", "de-3", "fr-1", "fr-3"]
    assert retriever.retrieve("docs", "rivers", READER, k=20, filter={"source": "en/2.md"})[0].document_id == "en-2"
    assert [
        h.document_id for h in retriever.retrieve("docs", "x", READER, filter={"document_id": "fr-0"}, mode="dense")
    ] == ["fr-0"]
    assert retriever.retrieve("docs", "rivers", READER, filter={"lang": "it"}) == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"lang": []}, "empty list"),
        ({"lang": [1, "a"]}, "only strings or only integers"),
        ({"lang": {"$ne": "en"}}, "got dict"),
        ({"bad key": "x"}, "letters, digits"),
        (["lang"], "an object"),
    ],
)
def test_bad_filters_are_refused(retriever: Retriever, bad: object, message: str) -> None:
    with pytest.raises(InvalidFilter, match=message):
        retriever.retrieve("docs", "rivers", READER, filter=bad)  # type: ignore[arg-type]


def test_bad_queries_are_refused(retriever: Retriever) -> None:
    with pytest.raises(InvalidQuery, match="empty"):
        retriever.retrieve("docs", "  ", READER)
    with pytest.raises(InvalidQuery, match="k must be"):
        retriever.retrieve("docs", "rivers", READER, k=0)
    with pytest.raises(InvalidQuery, match="mode"):
        retriever.retrieve("docs", "rivers", READER, mode="fuzzy")  # type: ignore[arg-type]


def test_hits_carry_the_chunk_and_its_document(retriever: Retriever) -> None:
    hit = retriever.retrieve("docs", "report 2", READER, k=1, filter={"lang": "fr"}, mode="bm25")[0]
    assert (hit.document_id, hit.chunk_id, hit.text) == ("fr-2", "fr-2#0", "R2\n\nreport 2 about rivers")
    assert {k: hit.metadata[k] for k in ("title", "source", "heading", "lang", "year")} == {
        "title": "R2",
        "source": "fr/2.md",
        "heading": "",
        "lang": "fr",
        "year": 2022,
    }
    scores = [h.score for h in retriever.retrieve("docs", "report 2 rivers", READER, k=12)]
    assert scores == sorted(scores, reverse=True)


def test_bm25_stems_and_drops_stopwords(retriever: Retriever) -> None:
    retriever.ingest("docs", [Document(id="run", text="The runners were running quickly")], acl=EVERYONE)
    assert [h.document_id for h in retriever.retrieve("docs", "run", READER, mode="bm25")] == ["run"]
    assert retriever.retrieve("docs", "the were", READER, mode="bm25") == []


def test_the_reranker_reorders_and_cannot_add(tmp_path: Path) -> None:
    def by_document_id(query: str, hits: list[Hit]) -> list[Hit]:
        return sorted(hits, key=lambda h: h.document_id)

    r = Retriever(tmp_path, hashing_embedding(), rerank=by_document_id)
    r.create_collection("docs", tenant="t1")
    r.ingest("docs", [Document(id=f"d{n}", text=f"rivers {'x ' * n}") for n in range(5)], acl=EVERYONE)
    assert [h.document_id for h in r.retrieve("docs", "rivers", READER, k=3)] == ["d0", "d1", "d2"]

    r.close()  # a collection is open in one Retriever at a time
    stranger = Hit("elsewhere", "elsewhere#0", 1.0, "injected", {})
    sneaky = Retriever(tmp_path, hashing_embedding(), rerank=lambda q, hits: [stranger, *hits])
    with pytest.raises(RetrievalError, match="not given"):
        sneaky.retrieve("docs", "rivers", Identity("u9", "t1"))


@pytest.mark.models
def test_minilm_finds_by_meaning_within_the_callers_rights(tmp_path: Path) -> None:
    r = Retriever(tmp_path, minilm_embedding())
    r.create_collection("kb", tenant="t1")
    r.upsert_documents(
        "kb",
        [
            (Document(id="vpn", text="To reach the intranet from home, connect the VPN client first."), EVERYONE),
            (Document(id="pay", text="Salaries are paid on the last working day of the month."), EVERYONE),
            (
                Document(id="hr", text="Remote workers must use the virtual private network for internal sites."),
                AccessList(groups=frozenset({"hr"})),
            ),
        ],
    )
    query = "how do I access internal websites while working remotely"
    assert [h.document_id for h in r.retrieve("kb", query, READER, k=1, mode="dense")] == ["vpn"]
    assert "hr" not in {h.document_id for h in r.retrieve("kb", query, READER, k=3)}
    hr = Identity("u2", "t2", frozenset({"hr"}))
    assert [h.document_id for h in r.retrieve("kb", query, hr, k=3)] == ["hr"]
