"""Task targets: what answers an item, and the sessions the runner opens on them.

A target is one of

- ``GatewayTarget`` ``{model, base_url}``: a model alias on a goldenpath gateway over HTTP;
- ``InProcessTarget`` ``{model, in_process: true, config}``: the same alias on a gateway built in this
  process from a config file (the embedded models when no file is given), driven through its ASGI
  app, so the request takes the gateway's whole path (validation, guards, cache, router) with no server;
- ``CollectionTarget`` ``{collection, k, mode}``: a retrieval collection, searched through any object
  implementing ``RetrievalTarget``;
- ``DetectorTarget`` ``{detector: prompt_injection, via}``: the guard's injection detector, in this
  process or through a gateway's ``/v1/guard/check``.

Chat targets get the item's rendered messages; the others get the text of its last user message
(the sample's input when the task has no template).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, cast, runtime_checkable

import httpx2  # openai's HTTP client library: its AsyncClient is what AsyncOpenAI takes
import openai
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from goldenpath.evals._results import EvalInputError

DEFAULT_BASE_URL = "http://127.0.0.1:8080/v1"
URL_ENV = "GOLDENPATH_URL"
API_KEY_ENVS = ("GOLDENPATH_API_KEY", "GOLDENPATH_ADMIN_KEY")
MAX_RETRIES = 5
REQUEST_TIMEOUT_S = 300.0
READY_TIMEOUT_S = 600.0
_IN_PROCESS_ORIGIN = "http://goldenpath.in-process"
_IN_PROCESS_URL = _IN_PROCESS_ORIGIN + "/v1"


class TargetError(EvalInputError):
    """A target cannot be opened (no key, no retriever, a gateway that does not start) or answered badly."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _default_url() -> str:
    return os.environ.get(URL_ENV) or DEFAULT_BASE_URL


class GatewayTarget(_Strict):
    """A model alias served by a goldenpath gateway over HTTP (any OpenAI-compatible endpoint works)."""

    model: str = Field(min_length=1, description="The alias clients send as ``model``.")
    base_url: str = Field(
        default_factory=_default_url,
        pattern=r"^https?://",
        description=f"The gateway's OpenAI base URL (default ${URL_ENV}, else {DEFAULT_BASE_URL}).",
    )


class InProcessTarget(_Strict):
    """A model alias on a gateway built in this process from a config file, with a throwaway store."""

    model: str = Field(min_length=1)
    in_process: Literal[True] = True
    config: str | None = Field(
        default=None,
        min_length=1,
        description="The gateway config file (relative to the task file); none: the embedded models.",
    )


class CollectionTarget(_Strict):
    """A retrieval collection: each item's text is the query, the output the ``k`` best document ids.

    Searched on a gateway's ``/v1/retrieve`` as the key when ``base_url`` is set, otherwise on a data directory
    (``data_dir``, else ``GOLDENPATH_HOME``, else ``.goldenpath``) as an admin, unless a retriever is given."""

    collection: str = Field(min_length=1)
    k: int = Field(default=10, ge=1, le=1000)
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    data_dir: str | None = None


class DetectorTarget(_Strict):
    """The guard's prompt-injection detector; the output is ``injection`` or ``benign``."""

    detector: Literal["prompt_injection"]
    via: Literal["process", "gateway"] = Field(
        default="process", description="``process``: InjectionDetector here; ``gateway``: POST /v1/guard/check."
    )
    base_url: str | None = Field(default=None, pattern=r"^https?://", description=f"With via gateway: ${URL_ENV}.")

    @model_validator(mode="before")
    @classmethod
    def _gateway_url(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and value.get("via") == "gateway" and value.get("base_url") is None:
            return {**value, "base_url": _default_url()}
        return value

    @model_validator(mode="after")
    def _url_only_via_gateway(self) -> DetectorTarget:
        if self.via == "process" and self.base_url is not None:
            raise ValueError("base_url is for via: gateway")
        return self


def _target_kind(value: Any) -> str:
    if isinstance(value, BaseModel):
        return type(value).__name__
    if isinstance(value, Mapping):
        if "collection" in value:
            return "CollectionTarget"
        if "detector" in value:
            return "DetectorTarget"
        if "in_process" in value or "config" in value:
            return "InProcessTarget"
    return "GatewayTarget"


Target = Annotated[
    Annotated[GatewayTarget, Tag("GatewayTarget")]
    | Annotated[InProcessTarget, Tag("InProcessTarget")]
    | Annotated[CollectionTarget, Tag("CollectionTarget")]
    | Annotated[DetectorTarget, Tag("DetectorTarget")],
    Discriminator(_target_kind),
]
TARGET_TAGS = ("GatewayTarget", "InProcessTarget", "CollectionTarget", "DetectorTarget")


@runtime_checkable
class RetrievalTarget(Protocol):
    """What a collection target searches: the ``k`` best ``(doc_id, score)`` for a query, best first.

    ``search`` may be a plain function (run in a worker thread) or a coroutine function.
    """

    def search(self, query: str, k: int) -> Sequence[tuple[str, float]] | Awaitable[Sequence[tuple[str, float]]]: ...


RetrieverFactory = Callable[[CollectionTarget], RetrievalTarget]
"""Opens a collection target (``goldenpath eval run --retriever MODULE:FACTORY`` names one)."""


@dataclass(frozen=True)
class TokenUsage:
    prompt: int = 0
    completion: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(self.prompt + other.prompt, self.completion + other.completion)

    def as_dict(self) -> dict[str, int]:
        return {"prompt": self.prompt, "completion": self.completion, "total": self.total}


@dataclass(frozen=True)
class ChatReply:
    text: str
    tokens: TokenUsage


ChatFn = Callable[[str, list[dict[str, Any]], Mapping[str, Any]], Awaitable[ChatReply]]
"""Sends ``(model, messages, request parameters)`` as one chat completion through a gateway."""


@dataclass(frozen=True)
class Answer:
    """A target's answer to one item: the output the scorers see, tokens spent, and what else it said."""

    output: str | list[str]
    tokens: TokenUsage = field(default_factory=TokenUsage)
    info: dict[str, Any] | None = None


async def chat_completion(
    client: openai.AsyncOpenAI, model: str, messages: list[dict[str, Any]], params: Mapping[str, Any]
) -> ChatReply:
    response = await client.chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]  # plain role/content dicts are valid message params
        **params,
    )
    if not response.choices:
        raise ValueError("the response has no choices")
    usage = response.usage
    tokens = TokenUsage(usage.prompt_tokens, usage.completion_tokens) if usage is not None else TokenUsage()
    return ChatReply(response.choices[0].message.content or "", tokens)


def api_key() -> str | None:
    for name in API_KEY_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def _need_key(key: str | None, what: str) -> str:
    if key is None:
        raise TargetError(f"{what} needs a gateway key: set {' or '.join('$' + n for n in API_KEY_ENVS)}")
    return key


def _http_client(base_url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=MAX_RETRIES, timeout=REQUEST_TIMEOUT_S)


def _query(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    raise TargetError("the item has no user message to use as the query")


class TargetSession(ABC):
    """An open target: answers items and gives the LLM judge a gateway to call."""

    def __init__(self, key: str | None, judge_client: openai.AsyncOpenAI | None = None) -> None:
        self._key = key
        self._judge_clients: dict[str | None, openai.AsyncOpenAI] = {}
        self._owned: list[openai.AsyncOpenAI] = []
        if judge_client is not None:
            self._judge_clients[None] = judge_client

    @abstractmethod
    async def answer(self, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> Answer:
        """The target's answer to one item's rendered messages, sent with ``params`` (chat targets)."""

    def judge_chat(self, base_url: str | None) -> ChatFn:
        """The judge's gateway: ``base_url`` over HTTP; else the target's gateway, or ``$GOLDENPATH_URL``
        when the target is not a gateway."""
        client = self._judge_clients.get(base_url)
        if client is None:
            url = base_url or _default_url()
            client = _http_client(url, _need_key(self._key, f"the LLM judge's gateway {url}"))
            self._judge_clients[base_url] = client
            self._owned.append(client)

        async def chat(model: str, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> ChatReply:
            return await chat_completion(client, model, messages, params)

        return chat

    async def aclose(self) -> None:
        for client in self._owned:
            await client.close()


class _ChatSession(TargetSession):
    def __init__(self, client: openai.AsyncOpenAI, model: str, key: str | None, owned: bool) -> None:
        super().__init__(key, judge_client=client)
        self._client, self._model = client, model
        if owned:
            self._owned.append(client)

    async def answer(self, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> Answer:
        reply = await chat_completion(self._client, self._model, messages, params)
        return Answer(reply.text, reply.tokens)


class _InProcessSession(_ChatSession):
    def __init__(self, client: openai.AsyncOpenAI, model: str, gateway: Any, home: str) -> None:
        super().__init__(client, model, None, owned=True)
        self._gateway, self._home = gateway, home

    async def aclose(self) -> None:
        try:
            await super().aclose()
            await self._gateway.shutdown()
        finally:
            shutil.rmtree(self._home, ignore_errors=True)


class _RetrievalSession(TargetSession):
    def __init__(self, retriever: RetrievalTarget, k: int, key: str | None) -> None:
        super().__init__(key)
        self._retriever, self._k = retriever, k

    async def answer(self, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> Answer:
        query = _query(messages)
        if inspect.iscoroutinefunction(self._retriever.search):
            hits = await self._retriever.search(query, self._k)
        else:
            hits = await asyncio.to_thread(self._retriever.search, query, self._k)
        if isinstance(hits, str | bytes) or not isinstance(hits, Sequence):
            raise TargetError(f"search returned {type(hits).__name__}, not a list of (doc_id, score)")
        ids = []
        for hit in hits:
            if not (isinstance(hit, Sequence) and len(hit) == 2 and isinstance(hit[0], str)):
                raise TargetError(f"search returned {hit!r}, not a (doc_id, score) pair")
            ids.append(hit[0])
        return Answer(ids)

    async def aclose(self) -> None:
        close = getattr(self._retriever, "aclose", None)  # the built-in gateway search holds a connection pool
        if close is not None:
            await close()
        await super().aclose()


class _DetectorSession(TargetSession):
    def __init__(self, detector: Any, key: str | None) -> None:
        super().__init__(key)
        self._detector = detector

    async def answer(self, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> Answer:
        score, reason = await asyncio.to_thread(self._detector.score, _query(messages))
        flagged = score >= self._detector.threshold
        return Answer("injection" if flagged else "benign", info={"score": round(score, 4), "reason": reason})


class _GuardCheckSession(TargetSession):
    def __init__(self, base_url: str, key: str) -> None:
        super().__init__(key)
        self._http = httpx2.AsyncClient(
            base_url=base_url.rstrip("/") + "/", headers={"Authorization": f"Bearer {key}"}, timeout=REQUEST_TIMEOUT_S
        )

    async def answer(self, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> Answer:
        response = await self._http.post("guard/check", json={"input": _query(messages), "stage": "input"})
        if response.status_code != 200:
            raise TargetError(f"guard check: HTTP {response.status_code}: {response.text[:300]}")
        verdict = response.json()
        found = [d for d in verdict.get("detections", []) if d.get("type") == "prompt_injection"]
        info = {"action": verdict.get("action"), "score": max((float(d["score"]) for d in found), default=0.0)}
        return Answer("injection" if found else "benign", info=info)

    async def aclose(self) -> None:
        await self._http.aclose()
        await super().aclose()


async def _start_in_process(target: InProcessTarget, base_dir: Path | None, aliases: set[str]) -> _InProcessSession:
    """A gateway from ``target.config`` with only the aliases the task uses, a private SQLite store in a
    temporary folder, in-memory limits and a fresh admin key; ready (models loaded) when this returns."""
    from goldenpath.config import ConfigError, load_settings
    from goldenpath.gateway import Gateway

    path = None if target.config is None else Path(target.config)
    if path is not None and not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        raise TargetError(f"in-process gateway: {exc}") from None
    known = {alias.name for alias in settings.models}
    missing = sorted(aliases - known)
    if missing:
        raise TargetError(
            f"in-process gateway ({path or 'embedded models'}): no model {', '.join(map(repr, missing))} "
            f"(it has {', '.join(sorted(known))})"
        )
    home = tempfile.mkdtemp(prefix="goldenpath-eval-")
    store = settings.store.model_copy(update={"url": f"sqlite:///{Path(home) / 'gateway.db'}"})
    settings = settings.model_copy(
        update={"models": [a for a in settings.models if a.name in aliases], "store": store, "redis_url": None}
    )
    key = "gp-eval-" + secrets.token_urlsafe(24)
    env = {**os.environ, "GOLDENPATH_ADMIN_KEY": key, "GOLDENPATH_SECRET": secrets.token_urlsafe(32)}
    gateway = Gateway(settings, env=env)
    try:
        await gateway.startup()
    except Exception:
        shutil.rmtree(home, ignore_errors=True)
        raise
    transport = httpx2.ASGITransport(app=cast(Any, gateway))
    http = httpx2.AsyncClient(transport=transport, base_url=_IN_PROCESS_URL)
    client = openai.AsyncOpenAI(
        base_url=_IN_PROCESS_URL, api_key=key, http_client=http, max_retries=MAX_RETRIES, timeout=REQUEST_TIMEOUT_S
    )
    session = _InProcessSession(client, target.model, gateway, home)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            probe = await http.get(_IN_PROCESS_ORIGIN + "/readyz")
            if probe.status_code == 200:
                return session
            state = probe.json()
            if probe.status_code != 503 or state.get("status") == "failed" or time.monotonic() > deadline:
                raise TargetError(f"in-process gateway did not start: {state}")
            await asyncio.sleep(0.05)
    except BaseException:
        await session.aclose()
        raise


async def open_session(
    target: GatewayTarget | InProcessTarget | CollectionTarget | DetectorTarget,
    *,
    base_dir: Path | None = None,
    aliases: set[str] | None = None,
    client: openai.AsyncOpenAI | None = None,
    retriever: RetrievalTarget | None = None,
    key: str | None = None,
) -> TargetSession:
    """Open ``target``. ``aliases``: every model the in-process gateway must serve (the target's and the
    judges'); ``client``: an OpenAI client for a gateway target (default: one on its base URL);
    ``retriever``: what a collection target searches; ``key``: the gateway key (default from the env)."""
    key = key or api_key()
    if client is not None and not isinstance(target, GatewayTarget):
        raise TargetError(f"a client is for a gateway target; this task's target is a {type(target).__name__}")
    if retriever is not None and not isinstance(target, CollectionTarget):
        raise TargetError(f"a retriever is for a collection target; this task's target is a {type(target).__name__}")
    if isinstance(target, GatewayTarget):
        if client is not None:
            return _ChatSession(client, target.model, key, owned=False)
        made = _http_client(target.base_url, _need_key(key, f"the gateway {target.base_url}"))
        return _ChatSession(made, target.model, key, owned=True)
    if isinstance(target, InProcessTarget):
        return await _start_in_process(target, base_dir, {target.model, *(aliases or ())})
    if isinstance(target, CollectionTarget):
        if retriever is None:
            retriever = await asyncio.to_thread(_collection_search, target, key)
        if not isinstance(retriever, RetrievalTarget):
            raise TargetError(f"{type(retriever).__name__} has no search(query, k) method")
        return _RetrievalSession(retriever, target.k, key)
    if target.via == "gateway":
        assert target.base_url is not None  # set by the validator
        return _GuardCheckSession(target.base_url, _need_key(key, f"the guard check of {target.base_url}"))
    from goldenpath.guard import InjectionDetector

    detector = InjectionDetector()
    await asyncio.to_thread(detector.warm)
    return _DetectorSession(detector, key)


class _EngineSearch:
    """A collection of goldenpath's retrieval engine on a data directory, searched as an admin: the best chunk
    of each document ranks it."""

    def __init__(self, target: CollectionTarget) -> None:
        from goldenpath.rag import Retriever

        home = target.data_dir or os.environ.get("GOLDENPATH_HOME") or ".goldenpath"
        self._retriever = Retriever(home)
        self._target = target
        self._retriever.get_collection(target.collection)  # fail now, not on every item

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        from goldenpath.rag import Identity

        admin = Identity("goldenpath-eval", "default", is_admin=True)
        depth = min(1000, 3 * k)  # chunks: a document may have several
        hits = self._retriever.retrieve(self._target.collection, query, admin, k=depth, mode=self._target.mode)
        return _best_per_document([(h.document_id, h.score) for h in hits], k)


class _GatewaySearch:
    """A collection on a gateway, searched through ``/v1/retrieve`` as the key (its access applies)."""

    def __init__(self, target: CollectionTarget, key: str) -> None:
        assert target.base_url is not None
        self._target = target
        self._http = httpx2.AsyncClient(
            base_url=target.base_url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=120
        )

    async def search(self, query: str, k: int) -> list[tuple[str, float]]:
        body = {"collection": self._target.collection, "query": query, "k": min(1000, 3 * k), "mode": self._target.mode}
        r = await self._http.post("/retrieve", json=body)
        if r.status_code != 200:
            raise TargetError(f"{self._target.base_url}/retrieve answered {r.status_code}: {r.text[:300]}")
        return _best_per_document([(h["document_id"], h["score"]) for h in r.json()["data"]], k)

    async def aclose(self) -> None:
        await self._http.aclose()


def _best_per_document(hits: list[tuple[str, float]], k: int) -> list[tuple[str, float]]:
    seen: dict[str, float] = {}
    for doc, score in hits:
        seen.setdefault(doc, score)
    return list(seen.items())[:k]


def _collection_search(target: CollectionTarget, key: str | None) -> RetrievalTarget:
    from goldenpath.rag import RetrievalError

    if target.base_url is not None:
        return _GatewaySearch(target, _need_key(key, f"the retrieval API of {target.base_url}"))
    try:
        return _EngineSearch(target)
    except RetrievalError as exc:
        raise TargetError(f"collection target: {exc}") from None
