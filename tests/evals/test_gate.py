"""Gate files, verdicts on constructed runs, and the JUnit, Markdown and HTML reports."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from goldenpath.evals import EvalInputError, GateError, compare_runs, evaluate_gate, load_gate, load_results, run_gate
from goldenpath.evals._gate import parse_gate
from tests.evals.conftest import binary_rows, write_results

GATE = """
metrics:
  accuracy:
    min: 0.5
    max_drop: 0.02
    confidence: 0.95
"""


def gate_file(tmp_path: Path, text: str = GATE) -> Path:
    path = tmp_path / "gate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def runs(tmp_path: Path, candidate: list[int], baseline: list[int]) -> tuple[Path, Path]:
    return (
        write_results(tmp_path / "candidate.jsonl", binary_rows(candidate)),
        write_results(tmp_path / "baseline.jsonl", binary_rows(baseline)),
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "metrics:\n  accuracy:\n    max_drop: -0.1\n",
            "metrics.accuracy.max_drop: Input should be greater than or equal to 0",
        ),
        ("metrics:\n  accuracy:\n    maxdrop: 0.1\n", "metrics.accuracy.maxdrop: Extra inputs are not permitted"),
        ("metrics:\n  accuracy:\n    confidence: 0.9\n", "metrics.accuracy: give at least one of min, max, max_drop"),
        ("metrics:\n  f1:\n    min: 0.9\n    max: 0.8\n", "metrics.f1: min (0.9) is greater than max (0.8)"),
        ("metrics:\n  f1:\n    min: 0.9\n    confidence: 1.5\n", "metrics.f1.confidence: Input should be less than 1"),
        ("metrics: {}\n", "metrics: Dictionary should have at least 1 item"),
        ("holm: true\n", "metrics: Field required"),
        ("- accuracy\n", "(top level): expected a mapping with a metrics key, got list"),
        ("", "got an empty file"),
        ("metrics: [\n", "not valid YAML"),
    ],
)
def test_bad_gate_file_names_file_field_and_reason(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(GateError) as err:
        load_gate(gate_file(tmp_path, text))
    message = str(err.value)
    assert message.startswith(str(tmp_path / "gate.yaml")) and reason in message and "\n" not in message


def test_gate_defaults() -> None:
    gate = parse_gate({"metrics": {"latency": {"max": 2.0, "higher_is_better": False}}}, "g.yaml")
    assert gate.holm and gate.seed == 0 and gate.metrics["latency"].confidence == 0.95


def test_identical_runs_pass_and_a_clear_drop_fails(tmp_path: Path) -> None:
    baseline = [1] * 80 + [0] * 20
    out = tmp_path / "out"
    assert run_gate(gate_file(tmp_path), *runs(tmp_path, baseline, baseline), out).passed
    dropped = [0] * 15 + [1] * 65 + [0] * 20  # 15 regressions, no improvement: a 15-point drop
    result = run_gate(gate_file(tmp_path), *runs(tmp_path, dropped, baseline), out)
    assert not result.passed
    [failure] = result.failures
    assert failure.name == "accuracy max_drop" and failure.observed == pytest.approx(-0.15)
    assert failure.p_value is not None and failure.p_value < 0.05
    comparison = result.comparison
    assert comparison is not None
    accuracy = comparison.metrics["accuracy"]
    assert (accuracy.method, accuracy.regressed, accuracy.improved, accuracy.unchanged) == ("tango-score", 15, 0, 85)
    assert accuracy.ci_low < -0.02 and accuracy.ci_high < 0
    assert [w.item_id for w in accuracy.worst] == [f"q{i:03d}" for i in range(10)]


def test_a_drop_within_the_margin_passes(tmp_path: Path) -> None:
    baseline = [1] * 300 + [0] * 100
    candidate = [0] * 4 + [1] * 296 + [0] * 100  # a 1-point drop against a 2-point margin
    assert run_gate(gate_file(tmp_path), *runs(tmp_path, candidate, baseline), tmp_path / "out").passed


def test_absolute_threshold_uses_every_candidate_item(tmp_path: Path) -> None:
    candidate = write_results(tmp_path / "c.jsonl", binary_rows([1] * 4 + [0] * 6))
    result = run_gate(gate_file(tmp_path, "metrics:\n  accuracy:\n    min: 0.5\n"), candidate, None, tmp_path / "o")
    [rule] = result.rules
    assert not rule.passed and rule.observed == pytest.approx(0.4) and result.comparison is None


def test_lower_is_better_metric(tmp_path: Path) -> None:
    gate = gate_file(tmp_path, "metrics:\n  latency:\n    max: 2.0\n    max_drop: 0.05\n    higher_is_better: false\n")
    baseline = write_results(tmp_path / "b.jsonl", [(f"q{i}", {"latency": 1.0 + i / 100}) for i in range(40)])
    slower = write_results(tmp_path / "c.jsonl", [(f"q{i}", {"latency": 1.3 + i / 100}) for i in range(40)])
    faster = write_results(tmp_path / "f.jsonl", [(f"q{i}", {"latency": 0.7 + i / 100}) for i in range(40)])
    result = run_gate(gate, slower, baseline, tmp_path / "o")
    assert [(r.rule, r.passed) for r in result.rules] == [("max", True), ("max_drop", False)]
    assert result.rules[1].observed == pytest.approx(0.3)
    assert run_gate(gate, faster, baseline, tmp_path / "o").passed


def test_missing_metric_fails_and_missing_baseline_is_bad_input(tmp_path: Path) -> None:
    gate = gate_file(tmp_path, GATE + "  f1:\n    min: 0.1\n    max_drop: 0.1\n")
    candidate, baseline = runs(tmp_path, [1, 0, 1], [1, 1, 1])
    result = run_gate(gate, candidate, baseline, tmp_path / "o")
    failed = {r.name: r.message for r in result.failures}
    assert failed == {
        "f1 min": "metric 'f1' is missing from the candidate",
        "f1 max_drop": "metric 'f1' is missing from the candidate",
    }
    with pytest.raises(EvalInputError, match=r"max_drop rules .* but no baseline"):
        run_gate(gate, candidate, None, tmp_path / "o")


def test_holm_corrects_across_the_no_regression_rules(tmp_path: Path) -> None:
    # Each metric: 5 regressions, no improvement: exact McNemar p = 2**-5 = 0.03125 < 0.05.
    rows_b = [(f"q{i}", {"a": 1, "b": 1}) for i in range(20)]
    rows_c = [(f"q{i}", {"a": int(i >= 5), "b": int(i < 15)}) for i in range(20)]
    candidate, baseline = write_results(tmp_path / "c.jsonl", rows_c), write_results(tmp_path / "b.jsonl", rows_b)
    rules = "metrics:\n  a:\n    max_drop: 0\n  b:\n    max_drop: 0\n"
    corrected = run_gate(gate_file(tmp_path, rules), candidate, baseline, tmp_path / "o")
    assert corrected.passed  # Holm: 2 * 0.03125 = 0.0625 for the first, then the running maximum
    assert [r.adjusted_p_value for r in corrected.rules] == pytest.approx([0.0625, 0.0625])
    uncorrected = run_gate(gate_file(tmp_path, "holm: false\n" + rules), candidate, baseline, tmp_path / "o")
    assert len(uncorrected.failures) == 2
    assert [r.p_value for r in uncorrected.rules] == pytest.approx([0.03125, 0.03125])


def test_repeats_are_clustered_by_item_and_unpaired_items_counted(tmp_path: Path) -> None:
    # Two epochs per item: item means are 0, 0.5 or 1, so the binary metric is tested on item means.
    base_rows = [(f"q{i}", {"accuracy": 1}) for i in range(30) for _ in range(2)]
    cand_rows = [(f"q{i}", {"accuracy": int(e == 0 or i >= 10)}) for i in range(32) for e in range(2)]
    candidate = load_results(write_results(tmp_path / "c.jsonl", cand_rows))
    baseline = load_results(write_results(tmp_path / "b.jsonl", base_rows))
    comparison = compare_runs(candidate, baseline)
    accuracy = comparison.metrics["accuracy"]
    assert (comparison.paired_items, comparison.only_in_candidate, comparison.only_in_baseline) == (30, 2, 0)
    assert (accuracy.n_paired, accuracy.epochs, accuracy.method, accuracy.binary) == (30, 2, "sign-flip", True)
    assert accuracy.mean_diff == pytest.approx(-10 * 0.5 / 30)
    assert accuracy.regressed == 10 and accuracy.p_value < 0.01


def test_results_are_reproducible(tmp_path: Path) -> None:
    rows_b = [(f"q{i}", {"f1": (i * 37 % 100) / 100}) for i in range(60)]
    rows_c = [(f"q{i}", {"f1": (i * 53 % 100) / 100}) for i in range(60)]
    candidate = load_results(write_results(tmp_path / "c.jsonl", rows_c))
    baseline = load_results(write_results(tmp_path / "b.jsonl", rows_b))
    gate = parse_gate({"metrics": {"f1": {"max_drop": 0.01}}, "seed": 3}, "g.yaml")
    first, second = evaluate_gate(gate, candidate, baseline), evaluate_gate(gate, candidate, baseline)
    assert first.comparison == second.comparison and first.rules == second.rules


def test_reports(tmp_path: Path) -> None:
    gate = gate_file(tmp_path, GATE + "  f1:\n    min: 0.9\n")
    baseline = [1] * 80 + [0] * 20
    dropped = [0] * 15 + [1] * 65 + [0] * 20
    out = tmp_path / "report"
    result = run_gate(gate, *runs(tmp_path, dropped, baseline), out)
    assert len(result.failures) == 2  # accuracy max_drop; f1 min (missing)

    suite = ET.parse(out / "junit.xml").getroot()
    cases = suite.findall(".//testcase")
    assert [c.get("name") for c in cases] == ["accuracy min", "accuracy max_drop", "f1 min"]
    assert len(suite.findall(".//testcase/failure")) == 2
    testsuite = suite.find("testsuite")
    assert testsuite is not None and testsuite.get("failures") == "2"

    summary = (out / "summary.md").read_text()
    assert summary.startswith("## ❌ Quality gate failed: 2 of 3 rules")
    assert "| ❌ | accuracy | drop <= 0.02 | -0.15 |" in summary and "`q000` (1 → 0)" in summary

    html = (out / "report.html").read_text()
    assert html.count("<svg") == 2 and "<circle" in html and "<rect" in html
    assert "q000" in html and "tango-score" in html
    for external in ("http://", "https://", "src=", "<script", "<link", "url("):
        assert external not in html
