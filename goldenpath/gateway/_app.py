"""The ASGI application: one explicit pipeline of plain async functions, no middleware stack.

Per request: read body (bounded) → authenticate → parse and validate → resolve the alias → call or
stream through the router → respond → queue a record and update metrics (both in memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import orjson

from goldenpath.cache import CacheHit, ResponseCache, StreamAssembler, completion_to_events
from goldenpath.config import CacheConfig, Settings
from goldenpath.gateway._admin import AdminAPI
from goldenpath.gateway._errors import APIError, invalid_request
from goldenpath.gateway._governance import Governance, cost_usd
from goldenpath.gateway._guarding import (
    GuardState,
    StreamFilter,
    build_guards,
    check,
    estimated_usage,
    guard_request,
    guard_response_async,
)
from goldenpath.gateway._retrieval import RetrievalAPI, citations_event, with_citations
from goldenpath.gateway._validation import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    GuardCheckRequest,
    parse_json,
    validate,
)
from goldenpath.providers import (
    InvalidRequestForProvider,
    Operation,
    Provider,
    ProviderError,
    UpstreamStatusError,
    Usage,
    create_provider,
    usage_from,
)
from goldenpath.routing import (
    BreakerState,
    DeadlineExceeded,
    NoHealthyDeployment,
    Outcome,
    Router,
    UnknownModel,
    UnsupportedOperation,
    deployment_name,
)
from goldenpath.store import RequestRecord, RequestRecorder, Store, StoreError
from goldenpath.telemetry import GatewayMetrics
from goldenpath.tenancy import (
    Admission,
    Governor,
    KeyRing,
    MemoryGovernor,
    Principal,
    RedisGovernor,
    load_server_secret,
    utc_day,
)

if TYPE_CHECKING:
    from goldenpath.policy import Action, PolicyEngine

log = logging.getLogger("goldenpath.gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_DONE = b"data: [DONE]\n\n"
_PUBLIC = frozenset({"/healthz", "/readyz"})
KEY_POLL_INTERVAL_S = 0.25
_INFERENCE: dict[str, tuple[Operation, Any]] = {
    "/v1/chat/completions": ("chat", ChatCompletionRequest),
    "/v1/completions": ("completions", CompletionRequest),
    "/v1/embeddings": ("embeddings", EmbeddingRequest),
}


class _ClientGone(Exception):
    """The client disconnected while we were streaming to it."""


@dataclass(slots=True, eq=False)
class _Exchange:
    """The state of one inference request as it moves through the pipeline."""

    rid: str
    start: float
    record: RequestRecord
    outcome: Outcome
    headers: list[tuple[bytes, bytes]]
    admission: Admission | None = None
    usage: Usage | None = None
    cache: CacheConfig | None = None  # set when the answer should be written to the cache
    guard: GuardState | None = None  # set when the alias has guards on
    sources: list[Any] | None = None  # retrieved chunks the answer is grounded in (chat ``retrieval``)


# A random per-process prefix and a counter: unique across replicas and restarts, no syscall per request.
_request_ids = itertools.count()
_REQUEST_ID_PREFIX = "req_" + os.urandom(8).hex()


def _request_id() -> str:
    return f"{_REQUEST_ID_PREFIX}{next(_request_ids):08x}"


class Gateway:
    """The whole gateway as one ASGI callable. ``startup``/``shutdown`` run from the ASGI lifespan."""

    def __init__(self, settings: Settings, *, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = dict(os.environ) if env is None else env
        self.metrics = GatewayMetrics()
        self.store = Store(settings.database_url)
        self.keys = KeyRing(self.store, b"")
        self.recorder = RequestRecorder(
            self.store,
            flush_interval_s=settings.store.record_flush_interval_s,
            batch_size=settings.store.record_batch_size,
            buffer_max=settings.store.record_buffer_max,
        )
        self.providers: dict[str, Provider] = {}
        for alias in settings.models:
            for i, dep in enumerate(alias.deployments):
                name = deployment_name(alias.name, i, dep)
                self.providers[name] = create_provider(name, dep, settings.data_dir)
        self.router = Router(settings.models, self.providers, settings.routing)
        self.governor: Governor = MemoryGovernor()
        self.governance = Governance(settings.models, self.keys, self.governor, self.metrics, self._reservation_ttl())
        self.admin = AdminAPI(self)
        self.retrieval = RetrievalAPI(self)
        self.cache: ResponseCache | None = None
        self._cache_config = {a.name: a.cache or settings.cache for a in settings.models}
        self._cache_writes: set[asyncio.Task[None]] = set()
        self._guard: Any = None
        self._guard_lock = asyncio.Lock()
        self._guards = build_guards(settings)
        self.policy = _policy_engine(settings)
        self._redis: Any = None
        self._background: list[asyncio.Task[None]] = []
        self.generated_admin_key: str | None = None
        self._load_errors: dict[str, str] = {}
        self._loading: list[asyncio.Task[None]] = []
        self._started = False
        self._max_body = settings.server.max_body_bytes
        self._timeout = settings.routing.request_timeout_s
        self._models_body = orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"id": a.name, "object": "model", "created": 0, "owned_by": "goldenpath"} for a in settings.models
                ],
            }
        )

    def _reservation_ttl(self) -> float:
        return self.settings.routing.request_timeout_s + 60

    # lifecycle

    async def startup(self) -> None:
        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.store.migrate)
        self.keys = KeyRing(self.store, load_server_secret(data_dir, self.env))
        self.generated_admin_key = await asyncio.to_thread(self.keys.ensure_admin_key, data_dir, self.env)
        await asyncio.to_thread(self.keys.refresh)
        if self.settings.redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(self.settings.redis_url)
            await self._redis.ping()
            self.governor = RedisGovernor(self._redis, prefix=self.settings.redis_prefix)
        self.governance = Governance(
            self.settings.models, self.keys, self.governor, self.metrics, self._reservation_ttl()
        )
        await self.governance.seed_budgets()
        await self._start_cache()
        for guard in {id(g): g for g in self._guards.values()}.values():
            await asyncio.to_thread(guard.warm)
        self._background.append(asyncio.create_task(self._watch_keys(), name="watch-keys"))
        if self.policy is not None and self.settings.policy.reload_interval_s > 0:
            self._background.append(asyncio.create_task(self._watch_policies(), name="watch-policies"))
        self.recorder.start()
        # Remote pools open at once; local models load in the background while /readyz says so.
        for name, provider in self.providers.items():
            self._loading.append(asyncio.create_task(self._start_provider(name, provider)))
        self._started = True

    async def _start_provider(self, name: str, provider: Provider) -> None:
        try:
            await provider.start()
        except Exception as exc:
            log.error("deployment %s failed to start: %s", name, exc)
            self._load_errors[name] = str(exc)

    async def _start_cache(self) -> None:
        enabled = [c for c in self._cache_config.values() if c.enabled]
        if not enabled:
            return
        embedder = None
        if any(c.semantic for c in enabled):
            from goldenpath.providers._packaged import minilm_onnx, minilm_tokenizer
            from goldenpath.providers.onnx_embeddings import OnnxEmbedder

            embedder = await asyncio.to_thread(
                OnnxEmbedder, minilm_onnx(), minilm_tokenizer(), max_length=256, n_threads=1
            )
        self.cache = ResponseCache(
            self.settings.cache, redis=self._redis, embedder=embedder, prefix=f"{self.settings.redis_prefix}:cache"
        )

    async def _watch_keys(self) -> None:
        """Reload keys and tenants when the store says they changed: revocations reach every replica."""
        while True:
            await asyncio.sleep(KEY_POLL_INTERVAL_S)
            try:
                if await asyncio.to_thread(self.keys.refresh_if_changed):
                    self.governance.forget_cached()
                    await self.governance.seed_budgets()
            except Exception:
                log.exception("reloading keys failed; keeping the previous set")

    async def _watch_policies(self) -> None:
        """Reload Cedar policies when their files change; a bad change keeps the policies in force."""
        assert self.policy is not None
        while True:
            await asyncio.sleep(self.settings.policy.reload_interval_s)
            try:
                if await asyncio.to_thread(self.policy.reload_if_changed):
                    log.info("reloaded Cedar policies (generation %d)", self.policy.generation)
            except Exception as exc:
                log.error("keeping the policies in force: %s", exc)

    def authorize(
        self,
        principal: Principal,
        action: str,
        resource: str,
        context: dict[str, Any] | None = None,
        record: RequestRecord | None = None,
    ) -> None:
        """Ask Cedar (when policies are configured); a denial is a 403 naming the policy, and is recorded."""
        if self.policy is None:
            return
        decision = self.policy.authorize(principal, cast("Action", action), resource, context)
        if decision.allowed:
            return
        if record is not None:
            denial = {"kind": "policy", "action": action, "resource": resource, "policies": list(decision.reasons)}
            record.decisions = [*(record.decisions or ()), denial]
        raise APIError(403, decision.message, code="policy_denied")

    def _authorize_inference(
        self, principal: Principal, alias: str, op: str, body: dict[str, Any], size: int, record: RequestRecord
    ) -> None:
        completion = body.get("max_completion_tokens") or body.get("max_tokens") or 0
        context = {"operation": op, "stream": bool(body.get("stream")), "estimated_tokens": size // 4 + completion}
        self.authorize(principal, "invoke_model", alias, context, record)
        for tool in body.get("tools") or ():
            self.authorize(principal, "call_tool", tool["function"]["name"], {"model": alias}, record)

    async def shutdown(self) -> None:
        for task in self._loading + self._background:
            task.cancel()
        await asyncio.gather(*self._cache_writes, return_exceptions=True)
        if self.cache is not None:
            await self.cache.close()
        await self.retrieval.close()
        await self.recorder.close()
        await self.governor.close()
        if self._redis is not None:
            await self._redis.aclose()
        for provider in self.providers.values():
            await provider.close()
        await asyncio.to_thread(self.store.close)

    @property
    def ready(self) -> bool:
        return self._started and all(p.ready for p in self.providers.values())

    # ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except StoreError as exc:  # a clear message, no traceback
                    log.error("startup failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        rid = _request_id()
        try:
            if path in _INFERENCE:
                if method != "POST":
                    raise APIError(
                        405, f"Method {method} is not allowed on {path}; use POST.", code="method_not_allowed"
                    )
                principal = self._authenticate(scope)
                await self._inference(scope, receive, send, path, principal, rid, start)
            elif path == "/v1/guard/check":
                if method != "POST":
                    raise APIError(
                        405, f"Method {method} is not allowed on {path}; use POST.", code="method_not_allowed"
                    )
                self._authenticate(scope)
                await self._guard_check(scope, receive, send, rid)
            elif path == "/v1/retrieve" or path == "/v1/collections" or path.startswith("/v1/collections/"):
                principal = self._authenticate(scope)
                await self.retrieval.handle(scope, receive, send, principal, rid)
            elif path.startswith("/admin/"):
                principal = self._authenticate(scope)
                self.authorize(principal, "admin", "api", {"method": method, "path": path})
                await self.admin.handle(scope, receive, send, principal, rid)
            elif method != "GET" and method != "HEAD":
                raise APIError(404, f"Unknown request URL: {method} {path}.", code="unknown_url")
            elif path in _PUBLIC:
                await self._probe(send, path)
            else:
                self._authenticate(scope)
                await self._get(send, path, rid)
        except APIError as err:
            await _respond(send, err.status, err.body(), [_JSON, (b"x-request-id", rid.encode()), *err.headers])
        except Exception:
            log.exception("request %s failed", rid)
            internal = APIError(500, f"The server had an error processing request {rid}.", code="internal_error")
            # If the answer had already begun there is nothing more to say to this client.
            with contextlib.suppress(RuntimeError):
                await _respond(send, 500, internal.body(), [_JSON, (b"x-request-id", rid.encode())])

    async def _guard_check(self, scope: Scope, receive: Receive, send: Send, rid: str) -> None:
        """A verdict only: which detectors fire on a text at a stage, and what the default policy would do."""
        body = parse_json(await self._read_body(scope, receive) or b"null")
        validate(GuardCheckRequest, body)
        guard = await self._guard_instance()
        verdict = await asyncio.to_thread(check, guard, body["input"], body.get("stage", "input"))
        await _respond(send, 200, verdict.model_dump_json().encode(), [_JSON, (b"x-request-id", rid.encode())])

    async def _guard_instance(self) -> Any:
        """The guard, loaded on first use (its models take about a second), once."""
        async with self._guard_lock:
            if self._guard is None:
                from goldenpath.guard import Guard

                def load() -> Any:
                    guard = Guard()
                    if guard.injection is not None:
                        guard.injection.warm()
                    return guard

                self._guard = await asyncio.to_thread(load)
        return self._guard

    def _authenticate(self, scope: Scope) -> Principal:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer" or not token.strip():
                    break
                principal = self.keys.authenticate(token.strip())
                if principal is None:
                    raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")
                return principal
        raise APIError(
            401,
            "You didn't provide an API key. Send it in the Authorization header as 'Bearer YOUR_KEY'.",
            code="missing_api_key",
        )

    async def _probe(self, send: Send, path: str) -> None:
        if path == "/healthz":
            await _respond(send, 200, b'{"status":"ok"}', [_JSON])
            return
        if self.ready:
            await _respond(send, 200, b'{"status":"ready"}', [_JSON])
            return
        body = {
            "status": "failed" if self._load_errors else "loading",
            "waiting_for": sorted(n for n, p in self.providers.items() if not p.ready and n not in self._load_errors),
            "errors": self._load_errors,
        }
        await _respond(send, 503, orjson.dumps(body), [_JSON])

    async def _get(self, send: Send, path: str, rid: str) -> None:
        if path == "/v1/models":
            await _respond(send, 200, self._models_body, [_JSON])
        elif path.startswith("/v1/models/"):
            name = path.removeprefix("/v1/models/")
            if name not in self.router.routes:
                raise APIError(404, f"The model `{name}` does not exist.", code="model_not_found", param="model")
            body = {"id": name, "object": "model", "created": 0, "owned_by": "goldenpath"}
            await _respond(send, 200, orjson.dumps(body), [_JSON])
        elif path == "/metrics":
            self.metrics.records_dropped.set(self.recorder.dropped)
            for route in self.router.routes.values():
                for dep in route.deployments:
                    self.metrics.breaker_open.labels(dep.name).set(int(dep.breaker.state is BreakerState.OPEN))
            await _respond(send, 200, self.metrics.render(), [(b"content-type", self.metrics.content_type.encode())])
        else:
            raise APIError(404, f"Unknown request URL: GET {path}.", code="unknown_url")

    async def _read_body(self, scope: Scope, receive: Receive, limit: int | None = None) -> bytes:
        limit = limit or self._max_body
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise invalid_request("Content-Length is not a number.", code="invalid_header") from None
                if declared > limit:
                    raise _too_large(limit)
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            return body
        parts = [body]
        size = len(body)
        while message.get("more_body"):
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            parts.append(chunk)
        return b"".join(parts)

    async def _inference(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        path: str,
        principal: Principal,
        rid: str,
        start: float,
    ) -> None:
        op, schema = _INFERENCE[path]
        raw = await self._read_body(scope, receive)
        if not raw:
            raise invalid_request("The request body is empty; send a JSON object.", code="invalid_json")
        body = parse_json(raw)
        validate(schema, body)
        model = body["model"]
        now = time.time()
        record = RequestRecord(
            id=rid,
            ts=now,
            day=utc_day(now),
            endpoint=op,
            status=200,
            latency_ms=0.0,
            key_id=principal.key_id,
            tenant=principal.tenant,
            model=model,
            stream=bool(body.get("stream")),
        )
        ex = _Exchange(rid, start, record, Outcome(), [])
        try:
            try:
                route = self.router.resolve(model, op)
                if self.policy is not None:
                    self._authorize_inference(principal, route.alias, op, body, len(raw), record)
                ex.admission = self.governance.admission(principal, route.alias, op, body, len(raw), rid)
                if ex.admission is not None:
                    ex.headers = await self.governance.admit(ex.admission)
                guard = self._guards.get(route.alias)
                if guard is not None and op != "embeddings":
                    ex.guard = GuardState(guard)
                    if op == "chat":
                        body, headers = await guard_request(ex.guard, body)
                        ex.headers += headers
                if op == "chat" and body.get("retrieval") is not None:
                    # Grounded answers are not cached: their sources depend on who asks and on the collection now.
                    body, ex.sources = await self.retrieval.ground(principal, body, ex.guard)
                elif self.cache is not None and await self._from_cache(
                    scope, send, route.alias, op, body, principal, ex
                ):
                    return
                deadline = time.monotonic() + self._timeout
                if record.stream:
                    await self._stream(send, receive, route, op, body, deadline, ex)
                else:
                    response = await self.router.call(route, op, body, ex.outcome, deadline)
                    ex.usage = response.usage
                    answer = response.body
                    if ex.guard is not None and ex.guard.checks_output:
                        answer, headers, cacheable = await guard_response_async(ex.guard, answer)
                        ex.headers += headers
                        ex.cache = ex.cache if cacheable else None
                        if any(d.stage == "output" and d.action == "block" for d in ex.guard.decisions):
                            record.error_type = "content_filter"
                    if ex.sources is not None:
                        answer = with_citations(answer, ex.sources)
                    await _respond(send, 200, answer, self._headers(ex))
                    self._cache_write(principal.tenant, op, body, answer, ex)
            except UnknownModel as exc:
                raise APIError(404, str(exc), code="model_not_found", param="model") from None
            except UnsupportedOperation as exc:
                raise APIError(400, str(exc), code="model_not_supported", param="model") from None
            except InvalidRequestForProvider as exc:
                raise APIError(400, exc.message, code=exc.code, param=exc.param) from None
            except UpstreamStatusError as exc:  # a non-retryable client error from the upstream
                raise _upstream_client_error(exc) from None
            except NoHealthyDeployment as exc:
                last = exc.last_error
                status = last.status if last else 503
                raise APIError(
                    status,
                    str(exc),
                    code=last.code if last else "no_healthy_deployment",
                    type="rate_limit_error" if status == 429 else "api_error",
                ) from None
            except DeadlineExceeded as exc:
                raise APIError(504, f"The request timed out: {exc}.", code="request_timeout") from None
            except ProviderError as exc:
                raise APIError(exc.status, exc.message, code=exc.code) from None
        except APIError as err:
            record.status = err.status
            record.error_type = err.code or err.type
            err.headers += ex.headers
            raise
        except _ClientGone:
            record.status = 499
            record.error_type = "client_disconnected"
        except Exception:
            record.status = 500
            record.error_type = "internal_error"
            raise
        finally:
            await self._finish(ex)

    async def _from_cache(
        self,
        scope: Scope,
        send: Send,
        alias: str,
        op: Operation,
        body: dict[str, Any],
        principal: Principal,
        ex: _Exchange,
    ) -> bool:
        """Answer from the cache if we may and can; otherwise note whether to store the answer."""
        assert self.cache is not None
        config = self._cache_config[alias]
        if not (config.enabled and self.cache.cacheable(op, body, config)):
            return False
        directive = _cache_control(scope)
        if directive is not None:
            ex.headers.append((b"x-goldenpath-cache", b"bypass"))
            self.metrics.cache.labels("bypass").inc()
            if directive == "no-cache":
                ex.cache = config  # fetch a fresh answer, and keep it
            return False
        hit = await self.cache.lookup(principal.tenant, op, body, config)
        if hit is None:
            ex.headers.append((b"x-goldenpath-cache", b"miss"))
            self.metrics.cache.labels("miss").inc()
            ex.cache = config
            return False
        self.metrics.cache.labels(f"hit_{hit.kind}").inc()
        ex.record.cache = hit.kind
        ex.headers.append((b"x-goldenpath-cache", f"hit-{hit.kind}".encode()))
        await self._send_hit(send, hit, body, ex)
        return True

    async def _send_hit(self, send: Send, hit: CacheHit, body: dict[str, Any], ex: _Exchange) -> None:
        headers = self._headers(ex)
        if not ex.record.stream:
            await _respond(send, 200, hit.body, headers)
            return
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        headers[0] = _SSE_HEADERS[0]
        await send({"type": "http.response.start", "status": 200, "headers": headers + _SSE_HEADERS[1:]})
        frames = b"".join(b"data: " + e + b"\n\n" for e in completion_to_events(hit.body, include_usage=wants_usage))
        await send({"type": "http.response.body", "body": frames + _DONE, "more_body": False})

    def _cache_write(
        self, tenant: str, op: Operation, body: dict[str, Any], answer: bytes | None, ex: _Exchange
    ) -> None:
        """Store an answer after it was sent, in the background (a semantic store embeds the text)."""
        if ex.cache is None or answer is None or self.cache is None:
            return
        task = asyncio.create_task(self.cache.store(tenant, op, body, answer, ex.cache))
        self._cache_writes.add(task)
        task.add_done_callback(self._cache_writes.discard)

    def _headers(self, ex: _Exchange) -> list[tuple[bytes, bytes]]:
        """Response headers; also fixes the gateway overhead (everything but the upstream's time) so far."""
        overhead = time.perf_counter() - ex.start - ex.outcome.upstream_s
        ex.record.overhead_ms = overhead * 1000
        return [
            _JSON,
            (b"x-request-id", ex.rid.encode()),
            (b"x-goldenpath-deployment", ex.outcome.deployment.encode()),
            (b"x-goldenpath-attempts", str(ex.outcome.attempts).encode()),
            (b"x-goldenpath-overhead-ms", f"{overhead * 1000:.3f}".encode()),
            *ex.headers,
        ]

    async def _stream(
        self,
        send: Send,
        receive: Receive,
        route: Any,
        op: Operation,
        body: dict[str, Any],
        deadline: float,
        ex: _Exchange,
    ) -> None:
        options = body.get("stream_options") or {}
        wants_usage = bool(options.get("include_usage"))
        # Always ask for usage upstream (it is what we account by); drop that chunk if the client didn't ask.
        upstream = {**body, "stream_options": {**options, "include_usage": True}}
        first, events = await self.router.open_stream(route, op, upstream, ex.outcome, deadline)
        headers = self._headers(ex)
        headers[0] = _SSE_HEADERS[0]
        await send({"type": "http.response.start", "status": 200, "headers": headers + _SSE_HEADERS[1:]})
        if ex.sources is not None:  # the sources come first: a chunk with no choices, like the usage chunk
            sources = b"data: " + citations_event(first, ex.sources) + b"\n\n"
            await send({"type": "http.response.body", "body": sources, "more_body": True})
        task = asyncio.current_task()
        gone = False

        def on_disconnect(fut: asyncio.Future[Any]) -> None:
            nonlocal gone
            if not fut.cancelled() and task is not None:
                gone = True
                task.cancel()

        watcher = asyncio.ensure_future(receive())
        watcher.add_done_callback(on_disconnect)
        guarded = StreamFilter(ex.guard) if ex.guard is not None and ex.guard.checks_output else None
        if guarded is not None and ex.guard is not None and ex.guard.mapping:
            ex.cache = None  # the answer carries restored values: never replay it to anyone else
        assembler = StreamAssembler(max_bytes=ex.cache.max_entry_bytes) if ex.cache is not None else None
        event: bytes | None = first
        try:
            while event is not None:
                if b'"usage"' in event:
                    parsed = orjson.loads(event)
                    found = usage_from(parsed)
                    if found is not None:
                        ex.usage = found
                        if not wants_usage and not parsed.get("choices"):
                            event = await anext(events, None)
                            continue
                if guarded is None:
                    outs: list[bytes] = [event]
                elif guarded.inline:
                    outs = guarded.on_event(event)
                else:
                    outs = await asyncio.to_thread(guarded.on_event, event)
                for out in outs:
                    if assembler is not None:
                        assembler.feed(out)
                    await send({"type": "http.response.body", "body": b"data: " + out + b"\n\n", "more_body": True})
                if guarded is not None and guarded.blocked:
                    ex.record.error_type = "content_filter"
                    await _close(events)  # stop the generation: nothing more will be sent
                    if ex.usage is None:  # the upstream's usage chunk will not come: charge an estimate
                        ex.usage = estimated_usage(body, guarded.generated_chars)
                    break
                event = await anext(events, None)
            if guarded is not None and not guarded.blocked:
                for out in guarded.end():
                    if assembler is not None:
                        assembler.feed(out)
                    await send({"type": "http.response.body", "body": b"data: " + out + b"\n\n", "more_body": True})
            # From here a disconnect is the client closing a finished stream: it must not cancel the request,
            # whose accounting and record (in _finish) are still to come.
            watcher.remove_done_callback(on_disconnect)
            await send({"type": "http.response.body", "body": _DONE, "more_body": False})
            if assembler is not None and not (guarded is not None and guarded.blocked):
                self._cache_write(ex.record.tenant or "", op, body, assembler.result(), ex)
        except asyncio.CancelledError:
            if not gone:
                raise
            if task is not None:
                task.uncancel()
            await _close(events)
            raise _ClientGone() from None
        except ProviderError as exc:
            # Bytes already reached the client: no retry. End the stream with an OpenAI-style error event.
            ex.record.status = 502
            ex.record.error_type = exc.code
            err = APIError(502, exc.message, code=exc.code)
            await send({"type": "http.response.body", "body": b"data: " + err.body() + b"\n\n", "more_body": False})
        finally:
            watcher.remove_done_callback(on_disconnect)
            watcher.cancel()

    async def _finish(self, ex: _Exchange) -> None:
        """Charge, record and count one request; runs after the response is sent."""
        record, outcome, usage = ex.record, ex.outcome, ex.usage
        if outcome.deployment and usage is not None:
            record.cost_usd = cost_usd(self.router.deployments[outcome.deployment].config, usage)
        if ex.admission is not None:
            try:
                await self.governance.settle(ex.admission, usage, record.cost_usd)
            except Exception:  # the record below still carries the charge; budgets re-seed from it
                log.exception("settling request %s with the governor failed", ex.rid)
        elapsed = time.perf_counter() - ex.start
        record.latency_ms = elapsed * 1000
        record.deployment = outcome.deployment or None
        record.attempts = outcome.attempts
        if outcome.ttft_s is not None:
            record.ttft_ms = (outcome.ttft_s + (record.overhead_ms or 0) / 1000) * 1000
        if usage is not None:
            record.prompt_tokens = usage.prompt_tokens
            record.completion_tokens = usage.completion_tokens
        if ex.guard is not None:
            ex.guard.finish(ex.rid, record.model, self.metrics)
            if ex.guard.decisions:
                record.decisions = [
                    *(record.decisions or ()),
                    *({"kind": "guard", **d.model_dump()} for d in ex.guard.decisions),
                ]
        self.recorder.add(record)
        m = self.metrics
        model = record.model if record.model in self.router.routes else "unknown"
        dep = outcome.deployment
        m.requests.labels(model, dep, record.endpoint, str(record.status)).inc()
        if record.status >= 400:
            m.errors.labels(model, record.error_type or "error").inc()
            return
        m.latency.labels(model, dep).observe(elapsed)
        if record.overhead_ms is not None:
            m.overhead.observe(record.overhead_ms / 1000)
        if record.stream and record.ttft_ms is not None:
            m.ttft.labels(model, dep).observe(record.ttft_ms / 1000)
        if outcome.attempts > 1:
            m.attempts.labels(model).inc(outcome.attempts - 1)
        if usage is not None:
            m.tokens.labels(model, dep, "prompt").inc(usage.prompt_tokens)
            m.tokens.labels(model, dep, "completion").inc(usage.completion_tokens)


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _close(events: Any) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


def _policy_engine(settings: Settings) -> PolicyEngine | None:
    """Cedar, loaded (and its policies validated against the schema) only when policy files are configured."""
    if not settings.policy.enabled:
        return None
    from goldenpath.policy import PolicyEngine, PolicyError

    try:
        return PolicyEngine(settings.policy)
    except PolicyError as exc:
        raise ValueError(str(exc)) from None


def _cache_control(scope: Scope) -> str | None:
    """``no-store`` (neither read nor write the cache), ``no-cache`` (fetch fresh, then store) or None."""
    for name, value in scope["headers"]:
        if name == b"cache-control":
            directives = {d.strip().split("=")[0] for d in value.decode("latin-1").lower().split(",")}
            if "no-store" in directives:
                return "no-store"
            if "no-cache" in directives:
                return "no-cache"
    return None


def _too_large(limit: int) -> APIError:
    return APIError(413, f"The request body exceeds the limit of {limit} bytes.", code="request_too_large")


def _upstream_client_error(exc: UpstreamStatusError) -> APIError:
    """Forward an upstream 4xx in OpenAI's shape, keeping its message when it sent one."""
    message, code, param, kind = exc.message, "upstream_error", None, None
    try:
        parsed = orjson.loads(exc.body)
        err = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            code = err.get("code") or code
            param = err.get("param")
            kind = err.get("type")
    except orjson.JSONDecodeError:
        pass
    return APIError(exc.upstream_status, message, code=str(code), param=param, type=kind)
