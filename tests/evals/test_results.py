"""Result files: what is accepted, and errors that name the file, the line and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldenpath.evals import ResultsError, load_results
from goldenpath.evals._results import parse_results

GOOD = '{"item_id": "a", "scores": {"accuracy": 1}}'


def test_repeats_are_epochs_in_file_order_and_items_are_averaged() -> None:
    text = "\n".join(
        [
            '{"item_id": "a", "scores": {"accuracy": true, "f1": 0.5}}',
            '{"item_id": 7, "scores": {"accuracy": 0}}',
            "",
            '{"item_id": "a", "scores": {"accuracy": false, "f1": 0.75}, "trace": "ignored"}',
        ]
    )
    run = parse_results(text, "r.jsonl")
    assert run.item_ids == ("a", "7")
    assert run.scores["accuracy"] == {"a": (1.0, 0.0), "7": (0.0,)}
    assert run.item_means("f1") == {"a": 0.625}
    assert run.is_binary("accuracy") and not run.is_binary("f1")
    assert run.mean("accuracy") == pytest.approx(0.25)
    assert run.metrics == ["accuracy", "f1"]


def test_explicit_epochs_are_ordered_by_epoch() -> None:
    text = '{"item_id": "a", "epoch": 1, "scores": {"m": 2}}\n{"item_id": "a", "epoch": 0, "scores": {"m": 1}}\n'
    assert parse_results(text, "r.jsonl").scores["m"]["a"] == (1.0, 2.0)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"scores": {"m": 1}}', "missing item_id"),
        ('{"item_id": true, "scores": {"m": 1}}', "item_id must be a string or an integer, got bool"),
        ('{"item_id": "", "scores": {"m": 1}}', "item_id is empty"),
        ('{"item_id": "b"}', "missing scores"),
        ('{"item_id": "b", "scores": [1]}', "scores must be an object, got list"),
        ('{"item_id": "b", "scores": {}}', "scores is empty"),
        ('{"item_id": "b", "scores": {"m": "yes"}}', "score 'm' must be a number or a boolean, got str"),
        ('{"item_id": "b", "scores": {"m": null}}', "score 'm' must be a number or a boolean, got null"),
        ('{"item_id": "b", "scores": {"m": NaN}}', "NaN is not a number JSON allows"),
        ('{"item_id": "b", "scores": {"m": 1e400}}', "score 'm' must be finite"),
        ('{"item_id": "b", "epoch": 0, "scores": {"m": 1}}', "epoch must be on every line or on none"),
    ],
)
def test_malformed_line_names_file_line_and_reason(line: str, reason: str) -> None:
    with pytest.raises(ResultsError) as err:
        parse_results(f"{GOOD}\n{line}\n", "run.jsonl")
    assert str(err.value).startswith("run.jsonl:2: ")
    assert reason in str(err.value)


def test_duplicate_item_epoch_names_the_first_line() -> None:
    text = '{"item_id": "a", "epoch": 0, "scores": {"m": 1}}\n{"item_id": "a", "epoch": 0, "scores": {"m": 0}}\n'
    with pytest.raises(ResultsError, match=r"^r\.jsonl:2: duplicate item_id 'a' epoch 0 \(first on line 1\)$"):
        parse_results(text, "r.jsonl")


def test_bad_epoch_value() -> None:
    with pytest.raises(ResultsError, match=r"r\.jsonl:1: epoch must be a non-negative integer, got -1"):
        parse_results('{"item_id": "a", "epoch": -1, "scores": {"m": 1}}', "r.jsonl")


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ResultsError, match=r"empty\.jsonl: no results"):
        load_results(empty)
    with pytest.raises(ResultsError, match=r"absent\.jsonl: cannot read result file"):
        load_results(tmp_path / "absent.jsonl")
