"""Output moderation: the offensive-language model (same numbers as alt-profanity-check) and deny lists.

The labelled sentences below are a sanity set, not a benchmark: they check the wiring and the
threshold's side of obvious cases, nothing about quality on real traffic.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from goldenpath.guard import DenyListDetector, DenyListPolicy, Guard, GuardPolicy, ToxicityDetector, export_toxicity
from goldenpath.guard._moderation import ARTIFACTS, TOXICITY_FILE

OFFENSIVE = [
    "You are a complete idiot and I hate you.",
    "Shut up, you stupid moron.",
    "Go to hell, you worthless piece of garbage.",
    "This is fucking bullshit.",
    "You're a pathetic loser and everyone laughs at you.",
    "Screw you and your shitty product.",
]
BENIGN = [
    "Thanks, the weather in Paris is lovely today.",
    "Kill the process with SIGTERM, then restart the daemon.",
    "The patient was diagnosed with type 2 diabetes.",
    "To fix the bug, drop the table and recreate the index.",
    "The attack surface of the API includes the login endpoint.",
    "The match was a massacre: the home team won 7-0.",
    "Beat the eggs and whip the cream until stiff.",
]


@pytest.fixture(scope="module")
def toxicity() -> ToxicityDetector:
    return ToxicityDetector()


def test_same_probabilities_as_the_package(toxicity: ToxicityDetector) -> None:
    from profanity_check import predict_prob  # type: ignore[import-untyped]

    texts = [*OFFENSIVE, *BENIGN, "", "the and of"]
    expected = predict_prob(texts)
    got = toxicity.probabilities(texts)
    assert max(abs(float(a) - float(b)) for a, b in zip(expected, got, strict=True)) < 1e-6


def test_export_reproduces_the_shipped_artifact(tmp_path: Path) -> None:
    out = tmp_path / TOXICITY_FILE
    version = export_toxicity(out)
    assert out.read_bytes() == (ARTIFACTS / TOXICITY_FILE).read_bytes()
    assert version == ToxicityDetector().version


def test_sanity_set_sides_of_the_default_threshold(toxicity: ToxicityDetector) -> None:
    threshold = GuardPolicy().toxicity.threshold
    assert all(toxicity.probability(t) >= threshold for t in OFFENSIVE)
    assert all(toxicity.probability(t) < 0.5 for t in BENIGN)


def test_one_offensive_sentence_in_a_long_text_is_found(toxicity: ToxicityDetector) -> None:
    polite = " ".join(BENIGN) * 5
    text = polite + " " + OFFENSIVE[1] + " " + polite
    assert toxicity.probability(text) < 0.9  # read whole, the polite text dilutes it ...
    (d,) = toxicity.detect(text, 0.9)  # ... per sentence it does not
    assert text[d.start : d.end].strip() == OFFENSIVE[1]
    assert (d.type, d.detail) == ("toxicity", "offensive_language")
    assert toxicity.detect(polite, 0.9) == []


def test_toxicity_runs_at_the_output_stage_by_default() -> None:
    guard = Guard(GuardPolicy(injection={"enabled": False}, pii={"enabled": False}, secrets={"enabled": False}))
    assert guard.check(OFFENSIVE[0], "output").action == "block"
    assert guard.check(OFFENSIVE[0], "input").action == "allow"


def test_deny_list_terms_are_whole_words_any_case() -> None:
    deny = DenyListDetector(terms=["Project Falcon", "c++"], patterns=[r"\bACME-\d{4}\b"])
    text = "About PROJECT   falcon, not falconry; c++ and acme-1234."
    found = deny.detect(text)
    assert [(text[d.start : d.end], d.detail) for d in found] == [
        ("PROJECT   falcon", "terms[0]"),
        ("c++", "terms[1]"),
        ("acme-1234", "patterns[0]"),
    ]
    assert deny.detect("projects falconry cplusplus") == []
    assert all(d.score == 1.0 and d.type == "deny_list" for d in found)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"patterns": ["(unclosed"]}, "patterns[0] is not a valid regular expression"),
        ({"patterns": ["a*"]}, "patterns[0] matches the empty string"),
        ({"terms": ["ok", " "]}, "terms[1] is empty"),
    ],
)
def test_bad_deny_lists_are_refused(policy: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        DenyListPolicy.model_validate(policy)


def test_redacting_a_deny_list_hit_names_the_kind_not_the_entry() -> None:
    policy = GuardPolicy(deny_list={"terms": ["Project Falcon"], "action": "redact"})
    guard = Guard(policy, injection=None)
    text = "Status of Project Falcon?"
    verdict = guard.check(text, "output")
    assert guard.redact(text, verdict, stage="output").text == "Status of <DENY_LIST>?"
