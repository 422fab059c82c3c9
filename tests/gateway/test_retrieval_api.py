"""Retrieval over HTTP: collections per tenant, documents with access lists (JSON and file upload), searches that
run as the caller, deletes, bad files, and chat answers grounded in the caller's chunks with citations."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, RunningGateway, Upstream, openai_alias, start_gateway

pytestmark = pytest.mark.models  # the built-in MiniLM embeds chunks and queries

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
DOCS = [
    {
        "id": "rotation",
        "title": "Credential rotation",
        "text": "Database passwords are rotated every Monday by the platform team.",
        "acl": {"groups": ["eng"]},
    },
    {
        "id": "holidays",
        "title": "Holidays",
        "text": "The office is closed on the first Monday of May for the spring holiday.",
    },
    {
        "id": "salary",
        "title": "Salary review",
        "text": "Salary reviews happen every Monday in March; managers send the letters.",
        "acl": {"principals": ["bob"]},
        "metadata": {"dept": "hr"},
    },
]


@pytest.fixture(scope="module")
def gw(upstreams: tuple[Upstream, Upstream], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    a, _ = upstreams
    models = [openai_alias("chat", a, "ok"), openai_alias("cite", a, "cite")]
    g = start_gateway(tmp_path_factory.mktemp("rag"), {"models": models})
    yield g
    g.stop()


def key(gw: RunningGateway, tenant: str, name: str, groups: list[str] | None = None) -> dict[str, str]:
    httpx.post(gw.url + "/admin/tenants", headers=ADMIN, json={"name": tenant})  # 409 when it exists
    spec: dict[str, Any] = {"tenant": tenant, "name": name}
    if groups is not None:
        spec["groups"] = groups
    r = httpx.post(gw.url + "/admin/keys", headers=ADMIN, json=spec)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def post(gw: RunningGateway, path: str, headers: dict[str, str], body: Any) -> httpx.Response:
    return httpx.post(gw.base_url + path, headers=headers, json=body, timeout=120)


def retrieve(gw: RunningGateway, headers: dict[str, str], collection: str, query: str, **extra: Any) -> list[str]:
    r = post(gw, "/retrieve", headers, {"collection": collection, "query": query, "k": 10, **extra})
    assert r.status_code == 200, r.text
    return [hit["document_id"] for hit in r.json()["data"]]


@pytest.fixture(scope="module")
def handbook(gw: RunningGateway) -> dict[str, dict[str, str]]:
    keys = {
        "alice": key(gw, "acme", "alice", ["eng"]),
        "bob": key(gw, "acme", "bob"),
        "carol": key(gw, "acme", "carol"),
        "eve": key(gw, "globex", "eve", ["eng"]),
    }
    r = post(gw, "/collections", keys["alice"], {"name": "handbook"})
    assert r.status_code == 201, r.text
    assert r.json()["tenant"] == "acme" and r.json()["documents"] == 0
    r = post(gw, "/collections/handbook/documents", keys["alice"], {"documents": DOCS})
    assert r.status_code == 200, r.text
    assert [d["status"] for d in r.json()["documents"]] == ["added"] * 3
    return keys


def test_every_search_runs_as_the_caller(gw: RunningGateway, handbook: dict[str, dict[str, str]]) -> None:
    query = "what happens every Monday?"
    assert set(retrieve(gw, handbook["alice"], "handbook", query)) == {"rotation", "holidays"}
    assert set(retrieve(gw, handbook["bob"], "handbook", query)) == {"holidays", "salary"}
    assert set(retrieve(gw, handbook["carol"], "handbook", query)) == {"holidays"}
    assert set(retrieve(gw, ADMIN, "handbook", query)) == {"rotation", "holidays", "salary"}
    for mode in ("dense", "bm25"):
        assert set(retrieve(gw, handbook["carol"], "handbook", query, mode=mode)) <= {"holidays"}
    assert retrieve(gw, handbook["bob"], "handbook", query, filter={"dept": "hr"}) == ["salary"]
    # another tenant's key is told the collection does not exist, whatever its groups
    r = post(gw, "/retrieve", handbook["eve"], {"collection": "handbook", "query": query})
    assert r.status_code == 404 and r.json()["error"]["code"] == "collection_not_found"
    hit = post(gw, "/retrieve", handbook["alice"], {"collection": "handbook", "query": "password rotation"}).json()
    first = hit["data"][0]
    assert first["document_id"] == "rotation" and first["chunk_id"].startswith("rotation#")
    assert "rotated every Monday" in first["text"] and first["metadata"]["title"] == "Credential rotation"


def test_bad_requests_get_specific_errors(gw: RunningGateway, handbook: dict[str, dict[str, str]]) -> None:
    alice = handbook["alice"]
    cases: list[tuple[str, Any, int, str]] = [
        ("/collections", {"name": "handbook"}, 409, "collection_exists"),
        ("/collections", {"name": "bad name!"}, 400, "retrieval_error"),
        ("/collections", {"name": "x", "chunk_overlap": 500}, 400, "invalid_value"),
        ("/collections", {"name": "x", "tenant": "globex"}, 403, "admin_required"),
        ("/retrieve", {"collection": "handbook"}, 400, "missing_required_parameter"),
        ("/retrieve", {"collection": "handbook", "query": "x", "k": 0}, 400, "invalid_value"),
        ("/retrieve", {"collection": "nope", "query": "x"}, 404, "collection_not_found"),
        ("/retrieve", {"collection": "handbook", "query": "x", "filter": {"dept": {"$gt": 1}}}, 400, "invalid_filter"),
        ("/collections/handbook/documents", {"documents": [{"id": "d", "text": " "}]}, 400, "invalid_document"),
        ("/collections/handbook/documents", {"documents": [{"id": "d", "txt": "x"}]}, 400, "invalid_document"),
        ("/collections/handbook/documents", {"documents": []}, 400, "invalid_value"),
    ]
    for path, body, status, code in cases:
        r = post(gw, path, alice, body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (path, body, r.text)
        assert r.json()["error"]["message"]


def test_upload_delete_and_hostile_files_leave_the_collection_intact(
    gw: RunningGateway, handbook: dict[str, dict[str, str]]
) -> None:
    alice, carol = handbook["alice"], handbook["carol"]
    name = "uploads-" + uuid.uuid4().hex[:6]
    assert post(gw, "/collections", alice, {"name": name}).status_code == 201
    url = f"{gw.base_url}/collections/{name}/documents"
    md = b"# Onboarding\n\nNew engineers get a laptop on their first day.\n\n## Access\n\nVPN access takes a week.\n"
    r = httpx.post(
        url,
        headers=alice,
        files={"file": ("onboarding.md", md, "text/markdown")},
        data={"acl": json.dumps({"groups": ["eng"]})},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert r.json()["documents"][0]["id"] == "onboarding.md"
    assert set(retrieve(gw, alice, name, "when do I get a laptop?")) == {"onboarding.md"}  # one chunk a section
    assert retrieve(gw, carol, name, "when do I get a laptop?") == []
    before = httpx.get(f"{gw.base_url}/collections/{name}", headers=alice).json()
    for filename, content in [
        ("broken.pdf", b"%PDF-1.7\nthis is not really a pdf"),
        ("blob.txt", b"\x00\x01\x02binary" * 100),
        ("tool.exe", b"MZ"),
    ]:
        r = httpx.post(url, headers=alice, files={"file": (filename, content)}, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_document", r.text
        assert filename in r.json()["error"]["message"]
    assert httpx.get(f"{gw.base_url}/collections/{name}", headers=alice).json() == before
    r = httpx.delete(f"{url}/onboarding.md", headers=alice)
    assert r.status_code == 200 and r.json()["chunks_removed"] >= 1
    assert retrieve(gw, alice, name, "when do I get a laptop?") == []
    assert httpx.get(f"{url}/onboarding.md", headers=alice).status_code == 404
    assert httpx.get(f"{gw.base_url}/collections/{name}", headers=alice).json()["chunks"] == 0


def test_chat_is_grounded_in_what_the_caller_may_read(gw: RunningGateway, handbook: dict[str, dict[str, str]]) -> None:
    question = [{"role": "user", "content": "What happens every Monday?"}]
    retrieval = {"collection": "handbook", "k": 3}
    grounded = {"model": "chat", "messages": question, "retrieval": retrieval}
    r = post(gw, "/chat/completions", handbook["carol"], grounded)
    assert r.status_code == 200, r.text
    answer = r.json()
    (system,) = answer["echo"]["system"]
    assert "[1] Holidays" in system and "first Monday of May" in system
    assert "Database passwords" not in system and "Salary" not in system  # not carol's to read
    assert [c["document_id"] for c in answer["citations"]] == ["holidays"]

    r = post(gw, "/chat/completions", ADMIN, {"model": "cite", "messages": question, "retrieval": retrieval})
    citations = r.json()["citations"]
    assert len(citations) == 3
    assert [c["index"] for c in citations] == [1, 2, 3]
    assert [c["cited"] for c in citations] == [True, False, True]  # "[1][3] ... [9]": 9 has no source
    assert all(c["chunk_id"].startswith(c["document_id"] + "#") for c in citations)

    body = {"model": "chat", "messages": question, "retrieval": retrieval, "stream": True}
    with httpx.stream("POST", gw.base_url + "/chat/completions", headers=handbook["bob"], json=body) as s:
        events = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
    first = json.loads(events[0])
    assert first["choices"] == [] and {c["document_id"] for c in first["citations"]} == {"holidays", "salary"}
    assert all(c["cited"] is None for c in first["citations"]) and events[-1] == "[DONE]"

    bad = post(gw, "/chat/completions", handbook["eve"], grounded)
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "collection_not_found"
    bad = post(gw, "/chat/completions", ADMIN, {"model": "chat", "messages": question, "retrieval": {"k": 2}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "retrieval.collection"


def test_an_unreachable_qdrant_server_is_a_503(tmp_path: Path) -> None:
    from tests.conftest import free_port

    config = {"retrieval": {"qdrant_url": f"http://127.0.0.1:{free_port()}"}, "models": []}
    g = start_gateway(tmp_path, config)
    try:
        r = post(g, "/retrieve", ADMIN, {"collection": "handbook", "query": "anything"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "retrieval_unavailable", r.text
    finally:
        g.stop()
