"""The Cedar examples in docs/policy.md load against the shipped schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from goldenpath.policy import PolicyConfig, PolicyEngine

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy.md"
BLOCKS = re.findall(r"```cedar\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_doc_has_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_doc_example_validates(tmp_path: Path, block: str) -> None:
    path = tmp_path / "doc.cedar"
    path.write_text(block, encoding="utf-8")
    assert PolicyEngine(PolicyConfig(files=[path])).policy_ids
