"""``goldenpath rag ingest`` and ``rag query``, on the data directory and through a running gateway."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY, start_gateway

pytestmark = pytest.mark.models


def _folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    (docs / "guides").mkdir(parents=True)
    (docs / "guides" / "vpn.md").write_text("# VPN\n\nThe VPN client is installed by the IT desk on day one.\n")
    (docs / "lunch.txt").write_text("Lunch is served in the canteen from noon to two.\n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not a pdf")
    return docs


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goldenpath", "rag", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_ingest_and_query_on_the_data_directory(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "GOLDENPATH_HOME": str(tmp_path / "home")}
    env.pop("GOLDENPATH_URL", None)
    docs = _folder(tmp_path)
    failed = run(["ingest", str(docs), "-c", "kb", "--acl", "group:it"], env)
    assert failed.returncode != 0 and "broken.pdf" in failed.stderr  # nothing half-ingested: the files are parsed first
    done = run(["ingest", str(docs), "-c", "kb", "--acl", "group:it", "--keep-going"], env)
    assert done.returncode == 0, done.stderr
    assert "kb: 2 documents (2 added); 1 files skipped" in done.stdout and "skipped" in done.stderr
    again = run(["ingest", str(docs), "-c", "kb", "--acl", "group:it", "--keep-going"], env)
    assert "2 unchanged" in again.stdout
    hits = run(["query", "who installs the VPN?", "-c", "kb", "--as-principal", "ann", "--group", "it", "--json"], env)
    assert json.loads(hits.stdout.splitlines()[0])["document_id"] == "guides/vpn.md"
    outsider = run(["query", "who installs the VPN?", "-c", "kb", "--as-principal", "bo"], env)
    assert outsider.stdout == "" and "no results" in outsider.stderr
    bad = run(["ingest", str(docs), "-c", "kb", "--acl", "team:x"], env)
    assert bad.returncode == 2 and "group:NAME" in bad.stderr


def test_through_a_running_gateway(tmp_path: Path) -> None:
    import os

    gw = start_gateway(tmp_path, {"models": []})
    try:
        env = {**os.environ, "GOLDENPATH_URL": gw.url, "GOLDENPATH_ADMIN_KEY": ADMIN_KEY}
        env.pop("GOLDENPATH_API_KEY", None)
        done = run(["ingest", str(_folder(tmp_path)), "-c", "remote-kb", "--keep-going"], env)
        assert done.returncode == 0, done.stderr
        assert "remote-kb: 2 documents (2 added)" in done.stdout
        hits = run(["query", "when is lunch?", "-c", "remote-kb"], env)
        assert hits.returncode == 0 and "[1]" in hits.stdout and "lunch.txt" in hits.stdout
        missing = run(["query", "x", "-c", "nope"], env)
        assert missing.returncode == 1 and "404" in missing.stderr and "nope" in missing.stderr
    finally:
        gw.stop()
