"""Prometheus metrics of the gateway, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "goldenpath_requests",
            "Requests answered",
            ["model", "deployment", "endpoint", "status"],
            registry=r,
        )
        self.errors = Counter("goldenpath_errors", "Requests that failed", ["model", "error_type"], registry=r)
        self.latency = Histogram(
            "goldenpath_request_latency_seconds",
            "Time from request to last byte",
            ["model", "deployment"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "goldenpath_time_to_first_token_seconds",
            "Time from request to the first streamed event",
            ["model", "deployment"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "goldenpath_overhead_seconds",
            "Gateway time outside the upstream call",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
            registry=r,
        )
        self.tokens = Counter("goldenpath_tokens", "Tokens processed", ["model", "deployment", "kind"], registry=r)
        self.attempts = Counter("goldenpath_upstream_retries", "Attempts beyond the first", ["model"], registry=r)
        self.breaker_open = Gauge(
            "goldenpath_breaker_open",
            "1 while a deployment's circuit breaker is open",
            ["deployment"],
            registry=r,
        )
        self.limited = Counter("goldenpath_limited", "Requests refused by a limit or budget", ["reason"], registry=r)
        self.budget_alerts = Counter(
            "goldenpath_budget_alerts", "Budgets that went over their limit", ["scope"], registry=r
        )
        self.cache = Counter("goldenpath_cache", "Cache lookups", ["result"], registry=r)
        self.guard = Counter(
            "goldenpath_guard", "Input guard verdicts other than allow", ["action", "type"], registry=r
        )
        self.records_dropped = Gauge(
            "goldenpath_records_dropped", "Request records dropped while the store was failing", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
