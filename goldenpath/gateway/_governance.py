"""Per-request governance: model scopes, rate limits and budgets around one governor call each way."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from typing import Any

from goldenpath.config import Deployment, ModelAlias
from goldenpath.gateway._errors import APIError
from goldenpath.providers import Usage
from goldenpath.store import BudgetPeriod
from goldenpath.telemetry import GatewayMetrics
from goldenpath.tenancy import Admission, Decision, Governor, KeyRing, Principal, period_bounds

log = logging.getLogger("goldenpath.governance")

# Completion tokens assumed for limits and budget reservations when a request sets no max_tokens.
DEFAULT_COMPLETION_ESTIMATE = 1024
_NO_RETRY = (b"x-should-retry", b"false")


@functools.lru_cache(maxsize=64)
def _period(period: BudgetPeriod, day_number: int) -> tuple[str, float]:
    label, _start, end = period_bounds(period, day_number * 86400.0)
    return label, end


def _duration(seconds: float) -> bytes:
    """OpenAI's reset format: ``20ms``, ``1s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms".encode()
    whole = math.ceil(seconds)
    return (f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s").encode()


def cost_usd(config: Deployment, usage: Usage | None) -> float:
    if usage is None:
        return 0.0
    return (
        usage.prompt_tokens * config.input_cost_per_mtok + usage.completion_tokens * config.output_cost_per_mtok
    ) / 1e6


class Governance:
    def __init__(
        self,
        aliases: list[ModelAlias],
        keys: KeyRing,
        governor: Governor,
        metrics: GatewayMetrics,
        reservation_ttl_s: float,
    ) -> None:
        self.keys = keys
        self.governor = governor
        self.metrics = metrics
        self.reservation_ttl_s = reservation_ttl_s
        self._aliases = {a.name: a for a in aliases}
        self._prices = {
            a.name: (
                max(d.input_cost_per_mtok for d in a.deployments),
                max(d.output_cost_per_mtok for d in a.deployments),
            )
            for a in aliases
        }
        self._static: dict[tuple[str, str], tuple[list[tuple[str, int]], list[tuple[str, int]]]] = {}
        self._alerted: set[str] = set()

    def forget_cached(self) -> None:
        """Called when keys or tenants change."""
        self._static.clear()

    def _limits(self, p: Principal, alias: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        found = self._static.get((p.key_id, alias))
        if found is None:
            a = self._aliases[alias]
            scopes = (f"key:{p.key_id}", f"tenant:{p.tenant}", f"model:{alias}")
            rpm = [(s, n) for s, n in zip(scopes, (p.key_rpm, p.tenant_rpm, a.rpm), strict=True) if n]
            tpm = [(s, n) for s, n in zip(scopes, (p.key_tpm, p.tenant_tpm, a.tpm), strict=True) if n]
            found = self._static[(p.key_id, alias)] = (rpm, tpm)
        return found

    def admission(
        self, p: Principal, alias: str, op: str, body: dict[str, Any], body_bytes: int, rid: str
    ) -> Admission | None:
        if not p.may_use(alias):
            raise APIError(
                403, f"This API key may not use the model `{alias}`.", code="model_not_allowed", param="model"
            )
        rpm, tpm = self._limits(p, alias)
        if not (rpm or tpm or p.budgets):
            return None
        completion = 0
        if op != "embeddings":
            completion = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_COMPLETION_ESTIMATE
            completion *= body.get("n") or 1
        prompt = body_bytes // 4  # OpenAI's own estimate: about four characters a token
        adm = Admission(rid, rpm, tpm, prompt + completion, reservation_ttl_s=self.reservation_ttl_s)
        if p.budgets:
            price_in, price_out = self._prices[alias]
            adm.reserve_micro = math.ceil(prompt * price_in + completion * price_out)  # USD/Mtok * tok = µUSD
            day = int(time.time() // 86400)
            adm.budgets = [
                (f"{b.scope}:{_period(b.period, day)[0]}", round(b.limit_usd * 1e6), b.hard) for b in p.budgets
            ]
        return adm

    async def admit(self, adm: Admission) -> list[tuple[bytes, bytes]]:
        """Admit or raise a 429; returns the rate-limit headers for the response."""
        try:
            d = await self.governor.admit(adm)
        except Exception as exc:  # Redis down or timing out: refuse rather than serve ungoverned
            log.error("admission check failed: %r", exc)
            raise APIError(
                503,
                "Rate limits and budgets cannot be checked right now; try again shortly.",
                code="governance_unavailable",
                headers=[(b"retry-after", b"1")],
            ) from None
        if not d.allowed:
            raise self._denied(d)
        headers = _rate_headers(d)
        if d.budget_exceeded:
            headers.append((b"x-goldenpath-budget-warning", ",".join(d.budget_exceeded).encode()))
        return headers

    def _denied(self, d: Decision) -> APIError:
        self.metrics.limited.labels(d.reason or "").inc()
        if d.reason == "budget":
            return APIError(
                429,
                f"The budget of {d.scope} is spent for this period.",
                code="budget_exceeded",
                type="insufficient_quota",
                headers=[_NO_RETRY],
            )
        unit = "requests" if d.reason == "rpm" else "tokens"
        headers = _rate_headers(d)
        if d.retry_after_s is None:
            headers.append(_NO_RETRY)
            message = f"Request too large for {d.scope}: it needs more {unit} per minute than the limit allows."
        else:
            headers += [
                (b"retry-after", str(max(1, math.ceil(d.retry_after_s))).encode()),
                (b"retry-after-ms", str(math.ceil(d.retry_after_s * 1000)).encode()),
            ]
            message = (
                f"Rate limit reached for {d.scope} on {unit} per minute. Please try again in {d.retry_after_s:.1f}s."
            )
        return APIError(429, message, code="rate_limit_exceeded", type=unit, headers=headers)

    async def settle(self, adm: Admission, usage: Usage | None, cost: float) -> None:
        tokens = usage.prompt_tokens + usage.completion_tokens if usage else 0
        over = await self.governor.settle(adm, tokens, round(cost * 1e6))
        for scope in over:
            if scope not in self._alerted:
                self._alerted.add(scope)
                self.metrics.budget_alerts.labels(scope.rsplit(":", 1)[0]).inc()
                log.warning("budget exceeded: %s", scope)

    async def seed_budgets(self) -> None:
        """Start every budget of this period from the request log (after a restart, or a new key)."""
        now = time.time()
        seen: set[str] = set()
        for p in self.keys.principals():
            for b in p.budgets:
                label, start, end = period_bounds(b.period, now)
                scope = f"{b.scope}:{label}"
                if scope in seen:
                    continue
                seen.add(scope)
                kind, _, ident = b.scope.partition(":")
                spent = await asyncio.to_thread(
                    self.keys.store.spent_since,
                    since_ts=start,
                    key_id=ident if kind == "key" else None,
                    tenant=ident if kind == "tenant" else None,
                )
                await self.governor.seed_spent(scope, round(spent * 1e6), ttl_s=end - now + 86400)


def _rate_headers(d: Decision) -> list[tuple[bytes, bytes]]:
    h: list[tuple[bytes, bytes]] = []
    if d.limit_requests is not None:
        h += [
            (b"x-ratelimit-limit-requests", str(d.limit_requests).encode()),
            (b"x-ratelimit-remaining-requests", str(d.remaining_requests or 0).encode()),
            (b"x-ratelimit-reset-requests", _duration(d.reset_requests_s or 0.0)),
        ]
    if d.limit_tokens is not None:
        h += [
            (b"x-ratelimit-limit-tokens", str(d.limit_tokens).encode()),
            (b"x-ratelimit-remaining-tokens", str(d.remaining_tokens or 0).encode()),
            (b"x-ratelimit-reset-tokens", _duration(d.reset_tokens_s or 0.0)),
        ]
    return h
