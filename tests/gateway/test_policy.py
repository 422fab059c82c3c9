"""Cedar on the request path: every inference request, tool and admin call is authorized by the example policies."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, RunningGateway, Upstream, openai_alias, start_gateway

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def gw(upstreams: tuple[Upstream, Upstream], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("policy")
    shutil.copytree(EXAMPLES, tmp / "policies")
    a, _ = upstreams
    config = {
        # relative to the config file
        "policy": {"files": ["policies"], "entities_file": "policies/entities.json"},
        "models": [openai_alias("small", a, "ok"), openai_alias("gpt-large", a, "ok")],
    }
    g = start_gateway(tmp, config)
    yield g
    g.stop()


def key(gw: RunningGateway, tenant: str, name: str, groups: list[str]) -> dict[str, str]:
    httpx.post(gw.url + "/admin/tenants", headers=ADMIN, json={"name": tenant})  # 409 when it exists
    r = httpx.post(gw.url + "/admin/keys", headers=ADMIN, json={"tenant": tenant, "name": name, "groups": groups})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def chat(gw: RunningGateway, headers: dict[str, str], model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(gw.base_url + "/chat/completions", headers=headers, json=body, timeout=30)


def tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}


def test_allow_deny_matrix(gw: RunningGateway) -> None:
    acme_eng = key(gw, "acme", "alice", ["eng"])
    acme_plain = key(gw, "acme", "bob", [])
    other_eng = key(gw, "globex", "carol", ["eng"])
    other_plain = key(gw, "globex", "dave", [])
    suspended = key(gw, "acme", "mallory", ["eng", "suspended"])
    expected = {
        # (key, model): allowed
        (0, "small"): True,
        (0, "gpt-large"): True,
        (1, "small"): True,
        (1, "gpt-large"): False,
        (2, "small"): False,
        (2, "gpt-large"): True,
        (3, "small"): False,
        (3, "gpt-large"): False,
        (4, "small"): False,
        (4, "gpt-large"): False,
    }
    keys = [acme_eng, acme_plain, other_eng, other_plain, suspended]
    for (i, model), allowed in expected.items():
        r = chat(gw, keys[i], model)
        assert (r.status_code == 200) is allowed, (i, model, r.text)
        if not allowed:
            error = r.json()["error"]
            assert r.status_code == 403 and error["code"] == "policy_denied" and error["type"] == "permission_error"
    denied = chat(gw, suspended, "small").json()["error"]["message"]
    assert "suspended" in denied  # the forbid that denied is named
    assert "no policy permits" in chat(gw, other_plain, "small").json()["error"]["message"]


def test_tools_and_admin(gw: RunningGateway) -> None:
    ops = key(gw, "acme", "olga", ["sre"])  # sre is inside ops (entities file)
    dev = key(gw, "acme", "dan", [])
    assert chat(gw, ops, "small", tools=[tool("shell")]).status_code == 200
    assert chat(gw, dev, "small", tools=[tool("search")]).status_code == 200
    r = chat(gw, dev, "small", tools=[tool("search"), tool("shell")])
    assert r.status_code == 403 and "shell-ops-only" in r.json()["error"]["message"]
    assert httpx.get(gw.url + "/admin/tenants", headers=ADMIN).status_code == 200
    r = httpx.get(gw.url + "/admin/tenants", headers=dev)
    assert r.status_code == 403 and r.json()["error"]["code"] == "policy_denied"


def test_denials_are_recorded(gw: RunningGateway) -> None:
    dev = key(gw, "acme", "erin", [])
    assert chat(gw, dev, "gpt-large").status_code == 403
    assert chat(gw, dev, "small", tools=[tool("shell")]).status_code == 403
    rows: list[tuple[str]] = []
    deadline = time.monotonic() + 20  # records are written in batches, off the request path
    while len(rows) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        with sqlite3.connect(gw.home / "goldenpath.db") as conn:
            rows = conn.execute("select decisions from requests where error_type = 'policy_denied'").fetchall()
    decisions = [d for (text,) in rows for d in json.loads(text)]
    assert {"kind": "policy", "action": "call_tool", "resource": "shell", "policies": ["shell-ops-only"]} in decisions
    assert any(d["action"] == "invoke_model" and d["resource"] == "gpt-large" for d in decisions)


def test_a_bad_policy_stops_the_start_with_file_line_and_reason(tmp_path: Path) -> None:
    (tmp_path / "bad.cedar").write_text(
        '@id("ok")\npermit (principal, action, resource);\n\n'
        '@id("typo")\npermit (principal, action == Goldenpath::Action::"invoke_modle", resource);\n'
    )
    config = tmp_path / "gp.yaml"
    config.write_text("policy:\n  files: [bad.cedar]\n")
    env = {**os.environ, "GOLDENPATH_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "goldenpath", "serve", "--config", str(config), "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "bad.cedar:4: policy 'typo'" in done.stderr and "action" in done.stderr
