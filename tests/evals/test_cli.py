"""``gate`` and ``compare`` as click commands: exit codes and output."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from goldenpath.evals import compare_command, gate_command
from tests.evals.conftest import binary_rows, write_results

GATE = "metrics:\n  accuracy:\n    min: 0.5\n    max_drop: 0.02\n    confidence: 0.95\n"


def files(tmp_path: Path, candidate: list[int]) -> list[str]:
    gate = tmp_path / "gate.yaml"
    gate.write_text(GATE)
    cand = write_results(tmp_path / "c.jsonl", binary_rows(candidate))
    base = write_results(tmp_path / "b.jsonl", binary_rows([1] * 80 + [0] * 20))
    return [str(gate), "--candidate", str(cand), "--baseline", str(base), "--out-dir", str(tmp_path / "out")]


def test_gate_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    passed = runner.invoke(gate_command, files(tmp_path, [1] * 80 + [0] * 20))
    assert passed.exit_code == 0, passed.output
    assert "gate passed" in passed.stdout and (tmp_path / "out" / "report.html").exists()

    failed = runner.invoke(gate_command, files(tmp_path, [0] * 15 + [1] * 65 + [0] * 20))
    assert failed.exit_code == 1
    assert "FAIL  accuracy max_drop" in failed.stdout and "gate FAILED (1 of 2 rules)" in failed.stdout


def test_gate_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    args = files(tmp_path, [1] * 100)
    (tmp_path / "gate.yaml").write_text("metrics:\n  accuracy:\n    max_drop: lots\n")
    bad_gate = CliRunner().invoke(gate_command, args)
    assert bad_gate.exit_code == 2
    assert bad_gate.stderr.count("\n") == 1 and "metrics.accuracy.max_drop" in bad_gate.stderr

    (tmp_path / "gate.yaml").write_text(GATE)
    (tmp_path / "c.jsonl").write_text('{"item_id": "q1", "scores": {"accuracy": "yes"}}\n')
    bad_results = CliRunner().invoke(gate_command, args)
    assert bad_results.exit_code == 2
    assert (
        bad_results.stderr
        == f"Error: {tmp_path / 'c.jsonl'}:1: score 'accuracy' must be a number or a boolean, got str\n"
    )

    missing = CliRunner().invoke(gate_command, [str(tmp_path / "gate.yaml"), "--candidate", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "cannot read result file" in missing.stderr


def test_compare_prints_a_table(tmp_path: Path) -> None:
    cand = write_results(
        tmp_path / "c.jsonl", [(f"q{i}", {"accuracy": i % 3 != 0, "latency": 1.0 + i}) for i in range(30)]
    )
    base = write_results(
        tmp_path / "b.jsonl", [(f"q{i}", {"accuracy": i % 4 != 0, "latency": 2.0 + i}) for i in range(28)]
    )
    result = CliRunner().invoke(compare_command, [str(cand), str(base), "--lower-is-better", "latency"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "28 paired items (2 only in the candidate, 0 only in the baseline)" in lines[0]
    assert lines[1].split()[:4] == ["METRIC", "N", "CANDIDATE", "BASELINE"]
    assert lines[2].split()[0] == "accuracy" and lines[2].split()[-1] == "mcnemar-exact"
    assert lines[3].split()[:2] == ["latency", "28"] and lines[3].split()[4] == "-1"

    unknown = CliRunner().invoke(compare_command, [str(cand), str(base), "--lower-is-better", "cost"])
    assert unknown.exit_code == 2 and "cost" in unknown.stderr
