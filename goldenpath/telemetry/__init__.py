"""Telemetry: Prometheus metrics."""

from goldenpath.telemetry._metrics import GatewayMetrics

__all__ = ["GatewayMetrics"]
