"""The built-in suites, run for real against the embedded model through a running gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest

from goldenpath.evals import load_results, load_task, run_task
from tests.conftest import ADMIN_KEY, start_gateway

pytestmark = pytest.mark.models

SUITES = Path(__file__).parents[2] / "examples" / "evals"


def test_squad_suite_against_the_embedded_model(tmp_path: Path) -> None:
    config = {
        "models": [
            {
                "name": "smollm2-135m-instruct",
                "deployments": [{"provider": "llamacpp", "model": "smollm2-135m-instruct", "n_ctx": 2048}],
            }
        ]
    }
    (tmp_path / "gw").mkdir()
    gw = start_gateway(tmp_path / "gw", config)
    try:
        task = load_task(SUITES / "squad-qa.yaml").model_copy(update={"limit": 6})
        client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=ADMIN_KEY)
        first = asyncio.run(
            run_task(task, run_dir=tmp_path / "run", client=client, progress=False, cache_path=tmp_path / "cache.db")
        )
        assert first.scored == 6 and first.errors == 0
        results = load_results(tmp_path / "run" / "results.jsonl")
        assert set(results.metrics) >= {"squad_em", "squad_f1", "answer_contains"}
        again = asyncio.run(
            run_task(task, run_dir=tmp_path / "rerun", client=client, progress=False, cache_path=tmp_path / "cache.db")
        )
        assert again.cached == 6 and again.called == 0
    finally:
        gw.stop()
