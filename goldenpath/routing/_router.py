"""Model aliases → deployments: strategies, retries with jittered backoff, breakers and deadlines.

The seam for releases: :meth:`Router.resolve` maps the name a client sent to a :class:`Route`.
A later release layer resolves an alias to a versioned release (with canary and shadow splits)
by returning a different route per request; everything after resolution stays the same.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from goldenpath.config import Deployment, ModelAlias, RoutingConfig
from goldenpath.providers import Operation, Provider, ProviderError, Response
from goldenpath.routing._breaker import CircuitBreaker


class UnknownModel(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"The model `{name}` does not exist or you do not have access to it.")
        self.name = name


class UnsupportedOperation(Exception):
    def __init__(self, alias: str, op: Operation) -> None:
        what = {"chat": "chat completions", "completions": "text completions", "embeddings": "embeddings"}[op]
        super().__init__(f"The model `{alias}` does not support {what}.")
        self.alias = alias


class NoHealthyDeployment(Exception):
    def __init__(self, alias: str, last_error: ProviderError | None) -> None:
        detail = f": {last_error.message}" if last_error else " (still loading, or all circuit breakers open)"
        super().__init__(f"No deployment of `{alias}` could answer{detail}")
        self.alias = alias
        self.last_error = last_error


class DeadlineExceeded(Exception):
    pass


@dataclass(eq=False)
class DeploymentState:
    """A deployment at run time: its provider, breaker and observed latency."""

    name: str
    config: Deployment
    provider: Provider
    breaker: CircuitBreaker
    ewma_latency_s: float | None = None

    def observe_latency(self, seconds: float, alpha: float) -> None:
        prev = self.ewma_latency_s
        self.ewma_latency_s = seconds if prev is None else prev + alpha * (seconds - prev)

    @property
    def unit_cost(self) -> float:
        return self.config.input_cost_per_mtok + self.config.output_cost_per_mtok


@dataclass(eq=False)
class Route:
    alias: str
    strategy: str
    deployments: list[DeploymentState]
    operations: frozenset[Operation] = field(init=False)

    def __post_init__(self) -> None:
        self.operations = frozenset(op for d in self.deployments for op in d.provider.operations)


@dataclass(slots=True)
class Outcome:
    """What the router did for one request, for headers, records and metrics."""

    deployment: str = ""
    attempts: int = 0
    upstream_s: float = 0.0
    ttft_s: float | None = None


def _weighted_order(deps: list[DeploymentState], rng: random.Random) -> list[DeploymentState]:
    # Efraimidis-Spirakis: sort by u^(1/w), a weighted shuffle without replacement.
    return sorted(deps, key=lambda d: rng.random() ** (1.0 / d.config.weight), reverse=True)


class Router:
    def __init__(self, aliases: Iterable[ModelAlias], providers: dict[str, Provider], config: RoutingConfig) -> None:
        self.config = config
        self._rng = random.Random()
        self.routes: dict[str, Route] = {}
        for alias in aliases:
            states = [
                DeploymentState(
                    name=deployment_name(alias.name, i, d),
                    config=d,
                    provider=providers[deployment_name(alias.name, i, d)],
                    breaker=CircuitBreaker(config.breaker_failure_threshold, config.breaker_cooldown_s),
                )
                for i, d in enumerate(alias.deployments)
            ]
            self.routes[alias.name] = Route(alias.name, alias.strategy, states)
        self.deployments = {d.name: d for r in self.routes.values() for d in r.deployments}

    def resolve(self, model: Any, op: Operation) -> Route:
        route = self.routes.get(model) if isinstance(model, str) else None
        if route is None:
            raise UnknownModel(str(model))
        if op not in route.operations:
            raise UnsupportedOperation(route.alias, op)
        return route

    def order(self, route: Route, op: Operation) -> list[DeploymentState]:
        deps = [d for d in route.deployments if op in d.provider.operations]
        if len(deps) <= 1:
            return deps
        if route.strategy == "weighted":
            return _weighted_order(deps, self._rng)
        if route.strategy == "least-latency":
            # Unmeasured deployments first, so each gets measured.
            return sorted(deps, key=lambda d: -1.0 if d.ewma_latency_s is None else d.ewma_latency_s)
        if route.strategy == "lowest-cost":
            return sorted(deps, key=lambda d: (d.unit_cost, d.config.priority))
        return sorted(deps, key=lambda d: d.config.priority)

    def _backoff(self, attempt: int) -> float:
        cap = min(self.config.backoff_max_s, self.config.backoff_base_s * (2 ** (attempt - 1)))
        return self._rng.uniform(0, cap)  # full jitter

    def _candidates(self, route: Route, op: Operation) -> Iterable[tuple[int, DeploymentState]]:
        """Attempt numbers and deployments: walk the ordered list, wrapping, skipping open breakers."""
        order = [d for d in self.order(route, op) if d.provider.ready]
        attempt = 0
        while attempt < self.config.max_attempts:
            progressed = False
            for dep in order:
                if attempt >= self.config.max_attempts:
                    return
                if not dep.breaker.allow():
                    continue
                attempt += 1
                progressed = True
                yield attempt, dep
            if not progressed:
                return

    async def call(
        self, route: Route, op: Operation, body: dict[str, Any], outcome: Outcome, deadline: float
    ) -> Response:
        last: ProviderError | None = None
        for attempt, dep in self._candidates(route, op):
            if attempt > 1:
                await self._sleep_before_retry(attempt - 1, deadline)
            outcome.attempts = attempt
            outcome.deployment = dep.name
            start = time.perf_counter()
            try:
                async with asyncio.timeout_at(_loop_deadline(deadline)):
                    response = await dep.provider.call(op, _upstream_body(body, dep))
            except TimeoutError as exc:
                dep.breaker.record_failure()
                raise DeadlineExceeded(f"request deadline exceeded on {dep.name}") from exc
            except ProviderError as exc:
                if not exc.retryable:
                    dep.breaker.record_success()  # it answered; the request was at fault
                    raise
                dep.breaker.record_failure()
                last = exc
                continue
            except BaseException:
                dep.breaker.abandon()
                raise
            finally:
                outcome.upstream_s += time.perf_counter() - start
            elapsed = time.perf_counter() - start
            dep.breaker.record_success()
            dep.observe_latency(elapsed, self.config.latency_ewma_alpha)
            outcome.ttft_s = elapsed
            return response
        raise NoHealthyDeployment(route.alias, last)

    async def open_stream(
        self, route: Route, op: Operation, body: dict[str, Any], outcome: Outcome, deadline: float
    ) -> tuple[bytes, AsyncIterator[bytes]]:
        """Start a stream and wait for its first event; failures before it are retried elsewhere.

        Once this returns, the caller sends bytes to the client and no retry may happen.
        """
        last: ProviderError | None = None
        for attempt, dep in self._candidates(route, op):
            if attempt > 1:
                await self._sleep_before_retry(attempt - 1, deadline)
            outcome.attempts = attempt
            outcome.deployment = dep.name
            start = time.perf_counter()
            events = aiter(dep.provider.stream(op, _upstream_body(body, dep)))
            try:
                async with asyncio.timeout_at(_loop_deadline(deadline)):
                    first = await anext(events)
            except StopAsyncIteration:
                last = ProviderError(f"{dep.name}: stream ended before any event", deployment=dep.name)
                dep.breaker.record_failure()
                continue
            except TimeoutError as exc:
                dep.breaker.record_failure()
                await _close(events)
                raise DeadlineExceeded(f"request deadline exceeded on {dep.name}") from exc
            except ProviderError as exc:
                await _close(events)
                if not exc.retryable:
                    dep.breaker.record_success()  # it answered; the request was at fault
                    raise
                dep.breaker.record_failure()
                last = exc
                continue
            except BaseException:
                dep.breaker.abandon()
                await _close(events)
                raise
            finally:
                outcome.upstream_s += time.perf_counter() - start
            elapsed = time.perf_counter() - start
            dep.breaker.record_success()  # it answered; a later break counts as a failure again
            dep.observe_latency(elapsed, self.config.latency_ewma_alpha)
            outcome.ttft_s = elapsed
            return first, _watch(events, dep)
        raise NoHealthyDeployment(route.alias, last)

    async def _sleep_before_retry(self, retry: int, deadline: float) -> None:
        delay = self._backoff(retry)
        if time.monotonic() + delay >= deadline:
            raise DeadlineExceeded("request deadline exceeded while retrying")
        await asyncio.sleep(delay)


def deployment_name(alias: str, index: int, config: Deployment) -> str:
    return config.name or f"{alias}#{index}:{config.provider}"


def _upstream_body(body: dict[str, Any], dep: DeploymentState) -> dict[str, Any]:
    return {**body, "model": dep.config.model}


def _loop_deadline(deadline: float) -> float:
    # Deadlines are on time.monotonic(), which is the clock asyncio's default loops use.
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


async def _close(events: AsyncIterator[bytes]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


async def _watch(events: AsyncIterator[bytes], dep: DeploymentState) -> AsyncIterator[bytes]:
    """Pass the rest of a stream through; a break in it counts against the deployment."""
    try:
        async for event in events:
            yield event
    except ProviderError:
        dep.breaker.record_failure()
        raise
    finally:
        await _close(events)
