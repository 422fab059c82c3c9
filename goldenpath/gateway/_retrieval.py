"""Retrieval on the API: ``/v1/collections`` (collections and their documents), ``/v1/retrieve``, and the chat
``retrieval`` extension that grounds an answer in the caller's readable chunks and maps its ``[n]`` citations.

Every search runs as the caller: their principal, groups and tenant are conditions of the search itself. A
collection belongs to one tenant; keys of other tenants are told it does not exist. The retrieval engine (and the
embedding model) load on the first retrieval request, so a gateway that never retrieves does not pay for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from goldenpath.gateway._errors import APIError, invalid_request
from goldenpath.gateway._validation import ChatRetrieval, parse_json, validate
from goldenpath.routing import Outcome
from goldenpath.tenancy import Principal

if TYPE_CHECKING:
    from goldenpath.gateway._app import Gateway, Receive, Scope, Send
    from goldenpath.gateway._guarding import GuardState
    from goldenpath.rag import AccessList, CollectionInfo, Document, Embedding, Hit, Identity, Retriever
    from goldenpath.rag._server_index import QdrantServer

_JSON = (b"content-type", b"application/json")
MAX_DOCUMENTS_PER_REQUEST = 1000


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AccessListInput(_Closed):
    """Who may read a document. Unset: everyone in the collection's tenant."""

    principals: list[str] = Field(default_factory=list, description="Key (principal) names of the tenant.")
    groups: list[str] = Field(default_factory=list)
    tenants: list[str] = Field(default_factory=list)


class CreateCollectionRequest(_Closed):
    name: str = Field(min_length=1, max_length=64)
    tenant: str | None = Field(default=None, description="Admin keys only: the owning tenant.")
    chunk_max_tokens: int | None = None
    chunk_overlap: int | None = None


class AddDocumentsRequest(_Closed):
    documents: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_DOCUMENTS_PER_REQUEST)
    acl: AccessListInput | None = Field(default=None, description="For documents without their own.")


class RetrieveRequest(_Closed):
    collection: str = Field(min_length=1)
    query: str = Field(min_length=1)
    k: int = Field(default=10, ge=1, le=1000)
    filter: dict[str, Any] | None = None
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"


def identity_of(p: Principal) -> Identity:
    from goldenpath.rag import Identity

    return Identity(principal=p.name, tenant=p.tenant, groups=p.groups, is_admin=p.is_admin)


def _access_list(given: AccessListInput | dict[str, Any] | None, tenant: str) -> AccessList:
    from goldenpath.rag import AccessList

    if given is None:
        return AccessList(tenants=frozenset({tenant}))
    acl = given if isinstance(given, AccessListInput) else AccessListInput.model_validate(given)
    return AccessList(frozenset(acl.principals), frozenset(acl.groups), frozenset(acl.tenants))


def collection_view(info: CollectionInfo) -> dict[str, Any]:
    return {
        "id": info.name,
        "object": "collection",
        "tenant": info.tenant,
        "embedding_model": info.embedding_model,
        "dimensions": info.dimensions,
        "documents": info.documents,
        "chunks": info.chunks,
        "created_at": int(info.created_at),
        "chunk_max_tokens": info.spec.chunk_max_tokens,
        "chunk_overlap": info.spec.chunk_overlap,
    }


def _retrieval_error(exc: Exception) -> APIError:
    from goldenpath.rag import (
        CollectionExists,
        CollectionNotFound,
        DocumentNotFound,
        IngestError,
        InvalidFilter,
        InvalidQuery,
    )

    if type(exc).__module__.startswith("qdrant_client"):  # the Qdrant server did not answer, or answered an error
        return APIError(503, f"The retrieval backend is unavailable: {exc}".strip(), code="retrieval_unavailable")
    match exc:
        case CollectionNotFound():
            return APIError(404, str(exc), code="collection_not_found", param="collection")
        case DocumentNotFound():
            return APIError(404, str(exc), code="document_not_found")
        case CollectionExists():
            return APIError(409, str(exc), code="collection_exists", param="name")
        case IngestError():
            return invalid_request(str(exc), code="invalid_document", param="documents")
        case InvalidFilter():
            return invalid_request(str(exc), code="invalid_filter", param="filter")
        case InvalidQuery():
            return invalid_request(str(exc), code="invalid_query")
    return invalid_request(str(exc), code="retrieval_error")


class RetrievalAPI:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.config = gateway.settings.retrieval
        self._qdrant: QdrantServer | None = None
        if self.config.qdrant_url is not None:  # only then load the engine here; a bad setting stops the start
            from goldenpath.rag._settings import qdrant_server

            self._qdrant = qdrant_server(self.config, gateway.env)
        self._retriever: Retriever | None = None
        self._lock = asyncio.Lock()

    async def retriever(self) -> Retriever:
        async with self._lock:
            if self._retriever is None:
                self._retriever = await asyncio.to_thread(self._make_retriever, asyncio.get_running_loop())
        return self._retriever

    def _make_retriever(self, loop: asyncio.AbstractEventLoop) -> Retriever:
        from goldenpath.rag import Retriever, SearchSettings

        alias = self.config.embedding_model
        embedding = self._alias_embedding(alias, loop) if alias is not None else None
        return Retriever(
            self.gw.settings.data_dir,
            embedding,
            search=SearchSettings(**self.config.search),
            qdrant=self._qdrant,
        )

    def _alias_embedding(self, alias: str, loop: asyncio.AbstractEventLoop) -> Embedding:
        """Embeddings through the router (with its retries and fallbacks), called from the engine's threads."""
        from goldenpath.rag import Embedding

        gw = self.gw

        def embed(texts: list[str]) -> list[list[float]]:
            route = gw.router.resolve(alias, "embeddings")
            deadline = time.monotonic() + gw.settings.routing.request_timeout_s
            call = gw.router.call(route, "embeddings", {"model": alias, "input": texts}, Outcome(), deadline)
            response = asyncio.run_coroutine_threadsafe(call, loop).result()
            data = sorted(orjson.loads(response.body)["data"], key=lambda d: d["index"])
            return [d["embedding"] for d in data]

        return Embedding(name=alias, dimensions=len(embed(["dimensions"])[0]), embed=embed)

    async def close(self) -> None:
        if self._retriever is not None:
            await asyncio.to_thread(self._retriever.close)

    async def _collection(self, name: str, p: Principal) -> CollectionInfo:
        """The collection, when the caller's tenant owns it (or the caller is an admin); 404 otherwise."""
        from goldenpath.rag import CollectionNotFound

        retriever = await self.retriever()
        info = await asyncio.to_thread(retriever.get_collection, name)
        if info.tenant != p.tenant and not p.is_admin:
            raise CollectionNotFound(name)
        return info

    @contextlib.contextmanager
    def _api_errors(self) -> Iterator[None]:
        """Retrieval errors as API errors, and a Qdrant server's failures as a 503."""
        from goldenpath.rag import RetrievalError

        try:
            yield
        except RetrievalError as exc:
            raise _retrieval_error(exc) from None
        except Exception as exc:
            if self._qdrant is None or not type(exc).__module__.startswith("qdrant_client"):
                raise
            raise _retrieval_error(exc) from None

    # HTTP

    async def handle(self, scope: Scope, receive: Receive, send: Send, p: Principal, rid: str) -> None:

        if not self.config.enabled:
            raise APIError(404, "Retrieval is not enabled on this gateway.", code="unknown_url")
        method: str = scope["method"]
        parts = scope["path"].strip("/").split("/")[1:]
        with self._api_errors():
            status, result = await self._dispatch(method, parts, scope, receive, p)
        await send(
            {"type": "http.response.start", "status": status, "headers": [_JSON, (b"x-request-id", rid.encode())]}
        )
        await send({"type": "http.response.body", "body": orjson.dumps(result)})

    async def _dispatch(
        self, method: str, parts: list[str], scope: Scope, receive: Receive, p: Principal
    ) -> tuple[int, Any]:
        match method, parts:
            case "POST", ["retrieve"]:
                body = parse_json(await self.gw._read_body(scope, receive) or b"null")
                validate(RetrieveRequest, body)
                request = RetrieveRequest.model_validate(body)
                hits = await self.search(p, request.collection, request.query, request.k, request.filter, request.mode)
                return 200, {"object": "list", "data": [h.as_dict() for h in hits]}
            case "POST", ["collections"]:
                return 201, await self._create(scope, receive, p)
            case "GET", ["collections"]:
                retriever = await self.retriever()
                infos = await asyncio.to_thread(retriever.list_collections, None if p.is_admin else p.tenant)
                return 200, {"object": "list", "data": [collection_view(i) for i in infos]}
            case "GET", ["collections", name]:
                return 200, collection_view(await self._collection(name, p))
            case "DELETE", ["collections", name]:
                await self._collection(name, p)
                await asyncio.to_thread((await self.retriever()).delete_collection, name)
                return 200, {"id": name, "object": "collection", "deleted": True}
            case "POST", ["collections", name, "documents"]:
                return 200, await self._add_documents(name, scope, receive, p)
            case "GET", ["collections", name, "documents"]:
                await self._collection(name, p)
                ids = await asyncio.to_thread((await self.retriever()).document_ids, name)
                return 200, {"object": "list", "data": ids}
            case "GET", ["collections", name, "documents", document_id]:
                await self._collection(name, p)
                doc = await asyncio.to_thread((await self.retriever()).get_document, name, document_id)
                return 200, {
                    "id": doc.id,
                    "object": "document",
                    "title": doc.title,
                    "source": doc.source,
                    "metadata": dict(doc.metadata),
                    "chunks": len(doc.chunks),
                    "acl": doc.acl.as_dict(),
                }
            case "DELETE", ["collections", name, "documents", document_id]:
                await self._collection(name, p)
                removed = await asyncio.to_thread((await self.retriever()).delete_document, name, document_id)
                return 200, {"id": document_id, "object": "document", "deleted": True, "chunks_removed": removed}
        raise APIError(404, f"Unknown request URL: {method} {scope['path']}.", code="unknown_url")

    async def _create(self, scope: Scope, receive: Receive, p: Principal) -> dict[str, Any]:
        from goldenpath.rag import CollectionSpec

        body = parse_json(await self.gw._read_body(scope, receive) or b"null")
        validate(CreateCollectionRequest, body)
        request = CreateCollectionRequest.model_validate(body)
        if request.tenant is not None and request.tenant != p.tenant and not p.is_admin:
            raise APIError(403, "Only admin keys may create collections for another tenant.", code="admin_required")
        spec_fields = {k: v for k, v in body.items() if k not in ("name", "tenant") and v is not None}
        validate(CollectionSpec, spec_fields)
        retriever = await self.retriever()
        info = await asyncio.to_thread(
            retriever.create_collection,
            request.name,
            tenant=request.tenant or p.tenant,
            spec=CollectionSpec.model_validate(spec_fields),
        )
        return collection_view(info)

    async def _add_documents(self, name: str, scope: Scope, receive: Receive, p: Principal) -> dict[str, Any]:
        info = await self._collection(name, p)
        content_type = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-type"), "")
        raw = await self.gw._read_body(scope, receive, limit=self.config.max_upload_bytes)
        if content_type.startswith("multipart/form-data"):
            items = await asyncio.to_thread(_uploaded_documents, content_type, raw, info.tenant)
        else:
            items = _json_documents(parse_json(raw or b"null"), info.tenant)
        retriever = await self.retriever()
        report = await asyncio.to_thread(retriever.upsert_documents, name, items)
        return {
            "object": "ingest",
            "collection": name,
            "documents": [{"id": r.document_id, "status": r.status, "chunks": r.chunks} for r in report.results],
            "chunks_embedded": report.chunks_embedded,
            "seconds": round(report.seconds, 3),
        }

    async def search(
        self, p: Principal, collection: str, query: str, k: int, filter: dict[str, Any] | None, mode: str
    ) -> list[Hit]:
        """Authorize (Cedar ``retrieve``), then search as the caller."""
        self.gw.authorize(p, "retrieve", collection, {})
        await self._collection(collection, p)
        retriever = await self.retriever()
        return await asyncio.to_thread(
            retriever.retrieve,
            collection,
            query,
            identity_of(p),
            k=k,
            filter=filter,
            mode=mode,  # type: ignore[arg-type]
        )

    # chat

    async def ground(
        self, p: Principal, body: dict[str, Any], guard: GuardState | None
    ) -> tuple[dict[str, Any], list[Hit]]:
        """The chat body with the caller's retrieved chunks as numbered sources (after the context guard), and
        those sources. The query is the last user message."""
        from goldenpath.rag._grounded import grounded_messages

        body = dict(body)
        spec = ChatRetrieval.model_validate(body.pop("retrieval"))
        query = next(
            (m["content"] for m in reversed(body["messages"]) if m["role"] == "user" and isinstance(m["content"], str)),
            None,
        )
        if not query or not query.strip():
            raise invalid_request("Chat retrieval needs a user message with text to search for.", param="messages")
        with self._api_errors():
            hits = await self.search(p, spec.collection, query, spec.k or self.config.default_k, spec.filter, spec.mode)
        if guard is not None and guard.guard.runs_at("context") and hits:
            hits = await asyncio.to_thread(_guard_sources, guard, hits)
        body["messages"] = grounded_messages(body["messages"], hits)
        return body, hits


def _guard_sources(state: GuardState, hits: list[Hit]) -> list[Hit]:
    """Retrieved chunks through the context guard: a blocked chunk (an injection planted in a document) is left
    out, a redacted one is sent redacted. Decisions go on the request's record."""
    from dataclasses import replace

    guard = state.guard
    kept: list[Hit] = []
    for hit in hits:
        verdict = guard.check(hit.text, "context")
        state.decisions += guard.decisions(verdict, "context")
        if verdict.action == "block":
            continue
        if verdict.action == "redact":
            hit = replace(hit, text=guard.redact(hit.text, verdict, stage="context").text)
        kept.append(hit)
    return kept


def _json_documents(body: Any, tenant: str) -> list[tuple[Document, AccessList]]:
    """``{"documents": [{"id", "text", "title"?, "metadata"?, "acl"?}, ...], "acl"?}``."""
    from goldenpath.rag import IngestError, parse_payload

    validate(AddDocumentsRequest, body)
    request = AddDocumentsRequest.model_validate(body)
    items = []
    for i, raw in enumerate(request.documents):
        fields = dict(raw)
        acl = fields.pop("acl", None)
        try:
            document = parse_payload(fields)
            access = _access_list(acl, tenant) if acl is not None else _access_list(request.acl, tenant)
        except IngestError as exc:
            raise invalid_request(str(exc), code="invalid_document", param=f"documents[{i}]") from None
        except ValueError as exc:
            raise invalid_request(
                f"documents[{i}].acl: {exc}".splitlines()[0], code="invalid_document", param=f"documents[{i}].acl"
            ) from None
        items.append((document, access))
    return items


def _uploaded_documents(content_type: str, raw: bytes, tenant: str) -> list[tuple[Document, AccessList]]:
    """Files of a ``multipart/form-data`` upload (field ``file``, repeatable), readable under the form's ``acl``
    field (JSON), or by the collection's tenant."""
    from python_multipart import parse_form
    from python_multipart.exceptions import FormParserError

    from goldenpath.rag import parse_upload

    files: list[tuple[str, bytes]] = []
    fields: dict[str, bytes] = {}

    def on_field(field: Any) -> None:
        fields[field.field_name.decode()] = field.value or b""

    def on_file(file: Any) -> None:
        file.file_object.seek(0)
        name = (file.file_name or b"").decode("utf-8", "replace")
        files.append((name, file.file_object.read()))

    try:
        parse_form({"Content-Type": content_type.encode()}, io.BytesIO(raw), on_field, on_file)
    except (FormParserError, ValueError) as exc:
        raise invalid_request(f"The multipart body cannot be read: {exc}.", code="invalid_multipart") from None
    if not files:
        raise invalid_request("The upload has no file; send it in the form field 'file'.", param="file")
    acl: AccessListInput | None = None
    if "acl" in fields:
        try:
            acl = AccessListInput.model_validate(orjson.loads(fields["acl"]))
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise invalid_request(f"'acl' must be a JSON access list: {exc}".splitlines()[0], param="acl") from None
    access = _access_list(acl, tenant)
    documents = [doc for name, content in files for doc in parse_upload(name, content)]
    return [(doc, access) for doc in documents]


def with_citations(answer: bytes, sources: list[Hit]) -> bytes:
    """A chat completion with ``citations``: every source given to the model, numbered as in the prompt, and
    whether the first choice's answer cites it."""
    from goldenpath.rag._grounded import citations

    parsed = orjson.loads(answer)
    choices = parsed.get("choices") or [{}]
    text = (choices[0].get("message") or {}).get("content")
    parsed["citations"] = citations(sources, text if isinstance(text, str) else "")
    return orjson.dumps(parsed)


def citations_event(first: bytes, sources: list[Hit]) -> bytes:
    """The stream's first chunk: no choices, the ``citations`` (``cited`` is null: the answer is not known yet)."""
    from goldenpath.rag._grounded import citations

    head: dict[str, Any] = {"object": "chat.completion.chunk"}
    try:
        parsed = orjson.loads(first)
        head |= {k: parsed[k] for k in ("id", "created", "model") if k in parsed}
    except orjson.JSONDecodeError:
        pass
    return orjson.dumps({**head, "choices": [], "citations": citations(sources, None)})
