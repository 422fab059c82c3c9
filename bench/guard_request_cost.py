"""What the default guards' detectors cost on the overhead benchmark's own request and answers, in process.

The gateway overhead with guards on (``bench/gateway-overhead/governed.sh guarded``) minus this is the
gateway's own cost of guarding (thread hops, JSON rewriting, stream filtering).

usage: .venv/bin/python bench/guard_request_cost.py   (pin with taskset -c 0 to match the gateway run)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from goldenpath.guard import Guard, StreamGuard

PROMPT = "Say hello in one short sentence."  # bench/gateway-overhead/post.lua
ANSWER = "Hello! This is a fixed response from the fake upstream."  # its fake upstream, non-streamed
DELTAS = [""] + [f"tok{i} " for i in range(10)]  # its fake upstream, streamed (10 chunks)


def timed(fn: Callable[[], object], n: int = 2000) -> float:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3


def main() -> None:
    guard = Guard()
    guard.warm()

    def stream() -> None:
        sg = StreamGuard(guard, "output", {})
        for d in DELTAS:
            sg.feed(d)
        sg.finish()

    inp = timed(lambda: guard.check(PROMPT, "input"))
    out = timed(lambda: guard.check(ANSWER, "output"))
    streamed = timed(stream)
    print(f"input check of the prompt:      {inp:.3f} ms (median of 2000)")
    print(f"output check of the answer:     {out:.3f} ms")
    print(f"streamed answer (10 deltas):    {streamed:.3f} ms")
    print(f"detectors per request: non-streamed {inp + out:.3f} ms, streamed {inp + streamed:.3f} ms")


if __name__ == "__main__":
    main()
