"""The shipped injection classifier on the held-back split, the artifact, and reproducible training."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from goldenpath.guard import InjectionDetector, train
from goldenpath.guard._features import make_embedder
from goldenpath.guard._train import ARTIFACTS, CARD_FILE, WEIGHTS_FILE, load_examples, roc_auc, split

pytestmark = pytest.mark.models
CARD = json.loads((ARTIFACTS / CARD_FILE).read_text())
MARGIN = 0.02


def test_artifact_is_small_and_versioned_by_content() -> None:
    weights = (ARTIFACTS / WEIGHTS_FILE).read_bytes()
    assert len(weights) < 2 * 1024 * 1024
    assert CARD["version"] == "sha256:" + hashlib.sha256(weights).hexdigest()[:16]


def test_quality_on_held_back_split(injection: InjectionDetector, data_dir: Path) -> None:
    examples = load_examples(data_dir)
    _, val_idx = split(examples, CARD["seed"])
    assert (
        hashlib.sha256(np.asarray(val_idx, dtype=np.int64).tobytes()).hexdigest()
        == (CARD["data"]["validation_indices_sha256"])
    )
    y = np.array([examples[i].label for i in val_idx])
    scores = np.array([injection.score(examples[i].text)[0] for i in val_idx])
    pred = scores >= injection.threshold
    tp, fp = int(np.sum(pred & (y == 1))), int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    f1 = 2 * tp / (2 * tp + fp + fn)
    fpr = fp / int(np.sum(y == 0))
    auc = roc_auc(y, scores)
    measured = CARD["validation"]["cascade_with_rules"]
    assert f1 >= max(0.90, measured["f1"]["value"] - MARGIN)
    assert fpr <= 0.03
    assert auc >= measured["roc_auc"]["value"] - MARGIN


def test_benign_prompts_pass(injection: InjectionDetector) -> None:
    for text in [
        "What is the capital of France?",
        "Can you help me write a cover letter for a junior data analyst position?",
        "Wie wird das Wetter morgen in Berlin?",
        "Translate 'good morning' into Spanish.",
    ]:
        assert injection.detect(text) is None, text


def test_training_is_reproducible_from_data_and_seed(data_dir: Path) -> None:
    embedder = make_embedder()
    first = train(3, data_dir, limit=40, embedder=embedder, bootstrap=20)
    second = train(3, data_dir, limit=40, embedder=embedder, bootstrap=20)
    assert first.version == second.version and first.weights == second.weights
    assert first.card == second.card


def test_train_command_is_a_click_command() -> None:
    from click.testing import CliRunner

    from goldenpath.guard import train_command

    result = CliRunner().invoke(train_command, ["--help"])
    assert result.exit_code == 0 and "--seed" in result.output and "--data" in result.output
