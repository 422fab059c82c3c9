"""Writing result and gate files for the evaluation tests."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path


def write_results(path: Path, rows: Sequence[tuple[str, Mapping[str, float | bool]]]) -> Path:
    """One JSONL line per ``(item_id, scores)``; an item repeated is a further epoch."""
    path.write_text("".join(json.dumps({"item_id": i, "scores": dict(s)}) + "\n" for i, s in rows), encoding="utf-8")
    return path


def binary_rows(outcomes: Sequence[int], metric: str = "accuracy") -> list[tuple[str, dict[str, float | bool]]]:
    return [(f"q{i:03d}", {metric: bool(v)}) for i, v in enumerate(outcomes)]
