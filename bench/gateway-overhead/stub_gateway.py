#!/usr/bin/env python3
"""Tiny pass-through "gateway" used only to self-test run_all.sh (not a product, not a baseline to quote).

aiohttp, one process: GET /readyz, /healthz -> 200; POST /v1/chat/completions -> bearer check against
$GATEWAY_KEY (skipped when unset), body forwarded unchanged to --upstream, response streamed back.
  venv/bin/python gateway-overhead/stub_gateway.py --port 8080 --upstream http://127.0.0.1:8001/v1
env STUB_BOOT_DELAY_S: sleep this long before binding (to exercise the readiness wait).
"""
import argparse
import os
import time

import aiohttp
from aiohttp import web

ap = argparse.ArgumentParser()
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, default=8080)
ap.add_argument("--upstream", default="http://127.0.0.1:8001/v1")
a = ap.parse_args()
KEY = os.environ.get("GATEWAY_KEY", "")
HOP = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


async def on_startup(app):
    app["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60))


async def on_cleanup(app):
    await app["s"].close()


async def ok(_):
    return web.json_response({"status": "ok"})


async def chat(request: web.Request) -> web.StreamResponse:
    if KEY and request.headers.get("Authorization", "") != f"Bearer {KEY}":
        return web.json_response({"error": {"message": "invalid api key", "type": "invalid_request_error"}}, status=401)
    body = await request.read()
    async with request.app["s"].post(a.upstream + "/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"}) as up:
        resp = web.StreamResponse(status=up.status,
                                  headers={k: v for k, v in up.headers.items() if k.lower() not in HOP})
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


if __name__ == "__main__":
    time.sleep(float(os.environ.get("STUB_BOOT_DELAY_S", "0")))
    try:
        import uvloop

        uvloop.install()
    except Exception:
        pass
    app = web.Application()
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/readyz", ok)
    app.router.add_get("/healthz", ok)
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host=a.host, port=a.port, access_log=None, print=None, backlog=1024)
