"""Topic allow and deny lists by MiniLM similarity; the model loads only when a policy lists topics."""

from __future__ import annotations

import pytest

from goldenpath.guard import Guard, GuardPolicy, InjectionDetector, TopicPolicy
from goldenpath.guard._topics import windows

pytestmark = pytest.mark.models

OFF = {"pii": {"enabled": False}, "secrets": {"enabled": False}, "toxicity": {"enabled": False}}


def guard_with(injection: InjectionDetector, topics: dict[str, object]) -> Guard:
    return Guard(GuardPolicy.model_validate({**OFF, "topics": topics}), injection=injection)


def test_denied_topics(injection: InjectionDetector) -> None:
    guard = guard_with(injection, {"deny": ["medical diagnosis", "competitor pricing"]})
    verdict = guard.check("My doctor said my blood test shows high glucose, what illness could that be?")
    assert verdict.action == "block"
    (d,) = verdict.detections
    assert (d.type, d.detail) == ("topic", "medical diagnosis") and d.score >= 0.3
    assert guard.check("Is your price lower than Globex?").detections[0].detail == "competitor pricing"
    assert guard.check("What is the capital of France?").action == "allow"


def test_allow_list_flags_what_is_about_none_of_them(injection: InjectionDetector) -> None:
    guard = guard_with(injection, {"allow": ["customer support for our billing product"], "action": "flag"})
    assert guard.check("Why was my invoice charged twice this month?").action == "allow"
    verdict = guard.check("Tell me a joke about cats.")
    assert verdict.action == "flag" and verdict.detections[0].detail == "off_topic"


def test_topics_run_only_at_their_stages(injection: InjectionDetector) -> None:
    guard = guard_with(injection, {"deny": ["medical diagnosis"], "stages": ["output"]})
    text = "I have chest pain and a fever, do I have pneumonia?"
    assert guard.check(text, "input").action == "allow"
    assert guard.check(text, "output").action == "block"


def test_no_topics_no_model() -> None:
    guard = Guard(GuardPolicy.model_validate({**OFF, "injection": {"enabled": False}}))
    assert guard.topics is None
    lazy = Guard(GuardPolicy.model_validate({**OFF, "injection": {"enabled": False}, "topics": {"deny": ["x y"]}}))
    assert lazy.topics is not None and lazy.topics._embedder is None  # loaded on first check or warm()


def test_windows_cover_long_texts_within_limits() -> None:
    text = "A sentence of some length here. " * 200  # 6,400 characters: 14 windows, 8 kept
    spans = windows(text)
    assert len(spans) == 8 and all(b - a <= 500 for a, b in spans)
    assert windows("short") == [(0, 5)]
    with pytest.raises(ValueError, match="topic 0 is empty"):
        TopicPolicy(deny=(" ",))
