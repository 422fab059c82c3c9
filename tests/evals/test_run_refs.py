"""Every command that reads a run takes a result file, a run directory or a run id (or a unique prefix)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from goldenpath.evals import (
    EvalInputError,
    ResultCache,
    compare_command,
    export_command,
    gate_command,
    load_run_results,
    load_task,
    report_command,
    resolve_run,
    run_task,
)
from tests.evals.fake_openai import FakeUpstream


async def two_runs(tmp_path: Path) -> tuple[str, str]:
    rows = [{"id": f"q{i}", "input": {"question": f"question {i}"}, "expected": f"question {i}"} for i in range(40)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "task.yaml").write_text(
        "name: refs\ndataset: data.jsonl\nprompt: '{{ question }}'\ntarget: {model: m}\n"
        "scorers: [{name: exact_match}]\n"
    )
    task = load_task(tmp_path / "task.yaml")
    good = await run_task(task, run_dir=tmp_path / "good", progress=False)
    worse = await run_task(
        task.model_copy(update={"prompt": "Q: {{ question }}"}), run_dir=tmp_path / "bad", progress=False
    )
    return good.run_id, worse.run_id


async def test_run_ids_work_wherever_runs_are_read(upstream: FakeUpstream, tmp_path: Path) -> None:
    good, bad = await two_runs(tmp_path)
    assert resolve_run(good) == (tmp_path / "good").resolve() and resolve_run(bad[:8]) == (tmp_path / "bad").resolve()
    assert load_run_results(good).scores == load_run_results(tmp_path / "good" / "results.jsonl").scores
    runner = CliRunner()

    compared = runner.invoke(compare_command, [bad, good[:10]])
    assert compared.exit_code == 0, compared.output
    assert "40 paired items" in compared.stdout and compared.stdout.splitlines()[2].split()[1:5] == [
        "40",
        "0",
        "1",
        "-1",
    ]

    gate = tmp_path / "gate.yaml"
    gate.write_text("metrics:\n  exact_match:\n    max_drop: 0.02\n")
    failed = runner.invoke(
        gate_command,
        [str(gate), "--candidate", bad, "--baseline", str(tmp_path / "good"), "--out-dir", str(tmp_path / "g")],
    )
    assert failed.exit_code == 1 and "FAIL  exact_match max_drop" in failed.stdout
    passed = runner.invoke(
        gate_command, [str(gate), "--candidate", good, "--baseline", good[:6], "--out-dir", str(tmp_path / "g")]
    )
    assert passed.exit_code == 0, passed.output

    exported = runner.invoke(export_command, [good])
    assert exported.exit_code == 0 and len(exported.stdout.splitlines()) == 40
    reported = runner.invoke(report_command, [bad[:12]])
    assert reported.exit_code == 0 and f"run {bad}" in reported.stdout and "target m at http" in reported.stdout


def test_unknown_and_ambiguous_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDENPATH_HOME", str(tmp_path))
    cache = ResultCache(tmp_path / "evals" / "cache.db")
    cache.register_run("abcdef01" + "0" * 24, tmp_path / "one")
    cache.register_run("abcdef02" + "0" * 24, tmp_path / "two")
    cache.close()
    with pytest.raises(EvalInputError, match="abcdef: matches 2 runs"):
        resolve_run("abcdef")
    assert resolve_run("abcdef02") == tmp_path / "two"
    with pytest.raises(
        EvalInputError, match="abcdef99: cannot read result file: no such file, run directory or run id"
    ):
        load_run_results("abcdef99")
    gone = CliRunner().invoke(compare_command, ["abcdef01", "abcdef02"])
    assert gone.exit_code == 2 and f"{tmp_path / 'one' / 'results.jsonl'}: no results" in gone.stderr
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "results.jsonl").write_text('{"item_id": 1, "scores": {"m": 1}}\n')
    missing = CliRunner().invoke(compare_command, ["abcdef01", "nope.jsonl"])
    assert missing.exit_code == 2 and "nope.jsonl: cannot read result file" in missing.stderr
