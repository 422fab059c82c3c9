"""Writing result and gate files for the evaluation tests, and the fake OpenAI server they run against."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.evals.fake_openai import FakeUpstream, serve


def write_results(path: Path, rows: Sequence[tuple[str, Mapping[str, float | bool]]]) -> Path:
    """One JSONL line per ``(item_id, scores)``; an item repeated is a further epoch."""
    path.write_text("".join(json.dumps({"item_id": i, "scores": dict(s)}) + "\n" for i, s in rows), encoding="utf-8")
    return path


def binary_rows(outcomes: Sequence[int], metric: str = "accuracy") -> list[tuple[str, dict[str, float | bool]]]:
    return [(f"q{i:03d}", {metric: bool(v)}) for i, v in enumerate(outcomes)]


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeUpstream]:
    """A fake OpenAI server as ``GOLDENPATH_URL``, with a key and a data directory of the test's own."""
    monkeypatch.setenv("GOLDENPATH_API_KEY", "test-key")
    monkeypatch.setenv("GOLDENPATH_HOME", str(tmp_path / "home"))
    with serve() as fake:
        monkeypatch.setenv("GOLDENPATH_URL", fake.base_url)
        yield fake
