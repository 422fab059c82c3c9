"""A 64-token completion of the embedded model: through the gateway vs calling the runtime directly.

Both run on this machine in one run, alternating request by request so drift hits both alike:
``direct`` calls the llama.cpp engine (xllamacpp) in this process with the same parameters the
gateway uses; ``gateway`` sends the same request over HTTP to ``goldenpath serve``, started here with
only that model. Every request must produce exactly 64 tokens (``ignore_eos``).

Run: ``.venv/bin/python bench/embedded_overhead.py [--n 40] [--stream]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from goldenpath.config import LlamaCppDeployment
from goldenpath.providers.llamacpp import LlamaCppProvider

KEY = "gp-bench-embedded-0123456789"
REQUEST = {
    "messages": [{"role": "user", "content": "Write a short story about a lighthouse keeper."}],
    "max_tokens": 64,
    "temperature": 0,
    "ignore_eos": True,
}


def start_gateway(tmp: Path, port: int, deployment: LlamaCppDeployment) -> subprocess.Popen[bytes]:
    cfg = tmp / "gp.yaml"
    alias = {"name": "smollm2-135m-instruct", "deployments": [deployment.model_dump(exclude_none=True)]}
    cfg.write_text(json.dumps({"models": [alias]}))
    env = {**os.environ, "GOLDENPATH_HOME": str(tmp / "home"), "GOLDENPATH_ADMIN_KEY": KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "goldenpath", "serve", "--config", str(cfg), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("gateway did not become ready")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--port", type=int, default=8097)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the gateway's)")
    args = ap.parse_args()

    deployment = LlamaCppDeployment(provider="llamacpp", model="smollm2-135m-instruct", n_threads=args.threads)
    provider = LlamaCppProvider("direct", deployment, Path(tempfile.mkdtemp()))
    asyncio.run(provider.start())
    engine = provider._server  # the runtime itself, with the gateway's parameters

    with tempfile.TemporaryDirectory() as tmp:
        proc = start_gateway(Path(tmp), args.port, deployment)
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{args.port}/v1",
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=60,
        )
        body = {**REQUEST, "model": "smollm2-135m-instruct", "stream": args.stream}

        def direct() -> float:
            t = time.perf_counter()
            if args.stream:
                n = [0]

                def on_chunk(_c: object) -> bool:
                    n[0] += 1
                    return False

                engine.handle_chat_completions({**REQUEST, "stream": True}, on_chunk)
            else:
                out = engine.handle_chat_completions(dict(REQUEST))
                assert out["usage"]["completion_tokens"] == 64, out["usage"]
            return time.perf_counter() - t

        def through_gateway() -> float:
            t = time.perf_counter()
            if args.stream:
                # A minimal reader, so the client's own parsing does not compete with the engine for
                # the two cores: read until the [DONE] event.
                with client.stream("POST", "/chat/completions", json=body) as r:
                    tail = b""
                    for part in r.iter_raw():
                        tail = (tail + part)[-32:]
                    assert tail.endswith(b"data: [DONE]\n\n"), tail
            else:
                r = client.post("/chat/completions", json=body)
                assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 64, r.text
            return time.perf_counter() - t

        try:
            for _ in range(3):  # warm both
                direct()
                through_gateway()
            times: dict[str, list[float]] = {"direct": [], "gateway": []}
            for i in range(args.n):
                order = [("direct", direct), ("gateway", through_gateway)]
                for name, fn in order if i % 2 == 0 else order[::-1]:
                    times[name].append(fn())
        finally:
            proc.terminate()
            proc.wait(30)

    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    result = {
        "n": args.n,
        "stream": args.stream,
        "threads": args.threads or "default",
        "direct_median_ms": round(med["direct"], 2),
        "gateway_median_ms": round(med["gateway"], 2),
        "ratio": round(med["gateway"] / med["direct"], 4),
        "added_ms": round(med["gateway"] - med["direct"], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
