from __future__ import annotations

import time

from goldenpath.routing import BreakerState, CircuitBreaker


def test_opens_after_threshold_and_probes_once() -> None:
    b = CircuitBreaker(failure_threshold=2, cooldown_s=0.05)
    assert b.allow()
    b.record_failure()
    assert b.state is BreakerState.CLOSED
    b.record_failure()
    assert b.state is BreakerState.OPEN and not b.allow()
    time.sleep(0.06)
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow()  # the probe
    assert not b.allow()  # only one at a time
    b.record_failure()
    assert b.state is BreakerState.OPEN
    time.sleep(0.06)
    assert b.allow()
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.allow() and b.allow()


def test_success_resets_the_failure_count() -> None:
    b = CircuitBreaker(failure_threshold=3, cooldown_s=10)
    for _ in range(10):
        b.record_failure()
        b.record_failure()
        b.record_success()
    assert b.state is BreakerState.CLOSED


def test_an_abandoned_probe_frees_the_slot() -> None:
    b = CircuitBreaker(failure_threshold=1, cooldown_s=0.01)
    b.record_failure()
    time.sleep(0.02)
    assert b.allow()  # the probe
    b.abandon()  # its client went away
    assert b.allow()  # another probe may go
