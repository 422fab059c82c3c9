"""Routing: model aliases to deployments, with strategies, retries, fallbacks and circuit breakers."""

from goldenpath.routing._breaker import BreakerState, CircuitBreaker
from goldenpath.routing._router import (
    DeadlineExceeded,
    DeploymentState,
    NoHealthyDeployment,
    Outcome,
    Route,
    Router,
    UnknownModel,
    UnsupportedOperation,
    deployment_name,
)

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "DeadlineExceeded",
    "DeploymentState",
    "NoHealthyDeployment",
    "Outcome",
    "Route",
    "Router",
    "UnknownModel",
    "UnsupportedOperation",
    "deployment_name",
]
