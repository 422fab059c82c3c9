"""Cost of one Cedar authorization decision in ``PolicyEngine.authorize``.

Policies: the examples in examples/policies (9 policies, group nesting from entities.json), and
the same plus ``--extra`` generated per-model permits (a large policy set). Keys: ``--keys`` distinct
keys of 1-3 groups each. Each case times ``authorize`` one call at a time with ``time.perf_counter_ns``
after a warm-up, one thread:

- ``uncached``: a decision never seen, for a key never seen (cache_size=0: the key entity is parsed
  and Cedar evaluates, every call);
- ``uncached, known key``: a decision never seen for a key whose entity handle is cached (each call
  names a new model alias);
- ``cached``: the same (key, action, resource, context shape) again;
- ``cedarpy string``: for reference, ``cedarpy.is_authorized`` with policies and entities passed as
  text (parsed on every call), what the engine avoids.

Run: ``.venv/bin/python bench/policy_bench.py [--calls 5000] [--extra 500] [--keys 200]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import cedarpy

from goldenpath.policy import DEFAULT_SCHEMA, PolicyConfig, PolicyEngine
from goldenpath.policy._model import key_entity
from goldenpath.tenancy import Principal

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "policies"
CONTEXT = {"operation": "chat", "stream": False, "estimated_tokens": 1200}
GROUPS = ("eng", "ops", "sre", "finance", "sales", "support")


def keys(n: int) -> list[Principal]:
    return [
        Principal(
            key_id=f"key-{i}",
            tenant=("acme", "globex", "initech")[i % 3],
            name=f"svc-{i}",
            is_admin=False,
            groups=frozenset(GROUPS[(i + j) % len(GROUPS)] for j in range(1 + i % 3)),
        )
        for i in range(n)
    ]


def timed(calls: int, fn: Callable[[int], object]) -> list[float]:
    for i in range(min(200, calls)):
        fn(i)
    out = []
    for i in range(calls):
        t = time.perf_counter_ns()
        fn(i)
        out.append((time.perf_counter_ns() - t) / 1000)
    return out


def row(name: str, micros: list[float]) -> str:
    q = statistics.quantiles(micros, n=100)
    return f"| {name} | {len(micros)} | {q[49]:.1f} | {q[94]:.1f} | {q[98]:.1f} | {statistics.fmean(micros):.1f} |"


def bench(files: list[Path], calls: int, n_keys: int, label: str) -> list[str]:
    entities = EXAMPLES / "entities.json"
    people = keys(n_keys)
    lines = []

    # Uncached: every call a fresh key id and alias, no caches at all.
    engine = PolicyEngine(PolicyConfig(files=files, entities_file=entities, cache_size=0))
    fresh = [
        Principal(key_id=f"new-{i}", tenant=p.tenant, name=p.name, is_admin=False, groups=p.groups)
        for i, p in enumerate(people * (calls // n_keys + 2))
    ]
    lines.append(
        row(
            f"{label}: uncached",
            timed(calls, lambda i: engine.authorize(fresh[i], "invoke_model", f"m{i % 50}", CONTEXT)),
        )
    )

    engine = PolicyEngine(PolicyConfig(files=files, entities_file=entities, cache_size=1_000_000))
    for p in people:  # entity handles in
        engine.authorize(p, "invoke_model", "warm", CONTEXT)
    lines.append(
        row(
            f"{label}: uncached, known key",
            timed(calls, lambda i: engine.authorize(people[i % n_keys], "invoke_model", f"alias-{i}", CONTEXT)),
        )
    )
    lines.append(
        row(
            f"{label}: cached",
            timed(calls, lambda i: engine.authorize(people[i % n_keys], "invoke_model", "small", CONTEXT)),
        )
    )
    assert engine.authorize(people[0], "invoke_model", "small", CONTEXT).cached
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--extra", type=int, default=500, help="generated policies added for the large set")
    parser.add_argument("--keys", type=int, default=200)
    args = parser.parse_args()

    print(f"cedarpy {version('cedarpy')}, {args.calls} calls per case, {args.keys} keys; microseconds per call\n")
    print("| case | calls | p50 | p95 | p99 | mean |")
    print("|---|---|---|---|---|---|")
    for line in bench([EXAMPLES], args.calls, args.keys, "9 policies"):
        print(line)
    with tempfile.TemporaryDirectory() as tmp:
        extra = Path(tmp) / "extra.cedar"
        extra.write_text(
            "".join(
                f'@id("extra-{i}")\npermit (principal in Goldenpath::Group::"{GROUPS[i % len(GROUPS)]}", '
                f'action == Goldenpath::Action::"invoke_model", resource == Goldenpath::Model::"model-{i}");\n'
                for i in range(args.extra)
            )
        )
        for line in bench([EXAMPLES, extra], args.calls, args.keys, f"{9 + args.extra} policies"):
            print(line)

    text = "\n".join(p.read_text() for p in sorted(EXAMPLES.glob("*.cedar")))
    schema = DEFAULT_SCHEMA.read_text()
    ents = json.dumps([key_entity(k) for k in keys(1)] + json.loads((EXAMPLES / "entities.json").read_text()))
    request = {
        "principal": {"type": "Goldenpath::Key", "id": "key-0"},
        "action": {"type": "Goldenpath::Action", "id": "invoke_model"},
        "resource": {"type": "Goldenpath::Model", "id": "small"},
        "context": CONTEXT,
    }
    calls = max(200, args.calls // 5)
    print(
        row(
            "9 policies: cedarpy string (no handles)",
            timed(calls, lambda i: cedarpy.is_authorized(request, text, ents, schema)),
        )
    )


if __name__ == "__main__":
    main()
