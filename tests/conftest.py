"""Shared fixtures: real servers on loopback, started as separate processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

HERE = Path(__file__).parent
ADMIN_KEY = "gp-test-admin-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0, status: int = 200) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == status:
                return
            last = r.text
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready: {last}")


@dataclass
class Upstream:
    url: str  # base URL up to /v1

    def calls(self) -> dict[str, int]:
        return dict(httpx.get(self.url.removesuffix("/v1") + "/_calls").json())

    def reset(self) -> None:
        httpx.post(self.url.removesuffix("/v1") + "/_reset")


def _start_upstream() -> tuple[subprocess.Popen[bytes], Upstream]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "fake_upstream.py"), str(port)])
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/_calls")
    return proc, Upstream(base + "/v1")


@pytest.fixture(scope="session")
def upstreams() -> Iterator[tuple[Upstream, Upstream]]:
    """Two independent fake upstream servers."""
    a_proc, a = _start_upstream()
    b_proc, b = _start_upstream()
    yield a, b
    for p in (a_proc, b_proc):
        p.kill()  # stalled handlers would hold up a graceful stop
        p.wait(10)


@dataclass
class RunningGateway:
    url: str
    proc: subprocess.Popen[bytes]
    home: Path
    config: Path

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def stop(self) -> str:
        """Graceful stop (SIGTERM); returns what the process printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        assert self.proc.stdout is not None
        return self.proc.stdout.read().decode()


def start_gateway(
    tmp: Path, config: dict[str, object], *, env: dict[str, str] | None = None, wait_ready: bool = True
) -> RunningGateway:
    port = free_port()
    cfg_path = tmp / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    home = tmp / "home"
    full_env = {**os.environ, "GOLDENPATH_HOME": str(home), "GOLDENPATH_ADMIN_KEY": ADMIN_KEY, **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "goldenpath", "serve", "--config", str(cfg_path), "--port", str(port)],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    gw = RunningGateway(f"http://127.0.0.1:{port}", proc, home, cfg_path)
    try:
        wait_http(gw.url + ("/readyz" if wait_ready else "/healthz"), timeout=120)
    except TimeoutError:
        proc.kill()
        raise
    return gw


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[object]:
    started: list[RunningGateway] = []

    def factory(config: dict[str, object], **kw: object) -> RunningGateway:
        sub = tmp_path / f"gw{len(started)}"
        sub.mkdir()
        gw = start_gateway(sub, config, **kw)  # type: ignore[arg-type]
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        if gw.proc.poll() is None:
            gw.proc.kill()
            gw.proc.wait(10)


def openai_alias(name: str, upstream: Upstream, model: str, **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "deployments": [{"provider": "openai", "base_url": upstream.url, "model": model, **extra}],
    }


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the machine's server, dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    name = "gp_test_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def redis_prefix() -> str:
    import uuid

    return "gptest-" + uuid.uuid4().hex[:10]
