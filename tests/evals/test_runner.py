"""Tasks and the runner, against a fake OpenAI-compatible server on loopback (no mocked client)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from goldenpath.evals import (
    Task,
    TaskError,
    create_task,
    export_command,
    gate_command,
    load_results,
    load_task,
    report_command,
    run_command,
    run_task,
    task,
)
from tests.evals.fake_openai import FakeUpstream


def write_task(tmp_path: Path, n: int = 6, extra: str = "", questions: list[str] | None = None) -> Path:
    """A dataset of ``n`` questions (every third one's expected answer differs from the echo) and its task."""
    questions = questions or [f"question {i}" for i in range(n)]
    rows = [
        {"id": f"q{i}", "input": {"question": q}, "expected": q if i % 3 else "something else"}
        for i, q in enumerate(questions)
    ]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "task.yaml"
    path.write_text(
        "name: echo\n"
        "dataset: data.jsonl\n"
        'prompt: "{{ question }}"\n'
        "target:\n  model: fake-model\n"
        "sampling:\n  max_tokens: 16\n  seed: 7\n"
        "scorers:\n  - name: exact_match\n  - name: contains\n    prefix: echo_\n" + extra
    )
    return path


async def test_run_writes_results_and_provenance(upstream: FakeUpstream, tmp_path: Path) -> None:
    task_ = load_task(write_task(tmp_path, extra="epochs: 2\n"))
    summary = await run_task(task_, run_dir=tmp_path / "run", progress=False)

    assert upstream.calls == 12
    assert (summary.status, summary.items, summary.scored, summary.errors, summary.called) == (
        "finished",
        12,
        12,
        0,
        12,
    )
    results = load_results(tmp_path / "run" / "results.jsonl")
    assert sorted(results.item_ids) == [f"q{i}" for i in range(6)]
    assert results.metrics == ["echo_contains", "exact_match"]
    assert all(len(epochs) == 2 for epochs in results.scores["exact_match"].values())
    assert summary.metrics["exact_match"] == pytest.approx(4 / 6)

    run = json.loads((tmp_path / "run" / "run.json").read_text())
    dataset = task_.load_dataset()
    assert run["run_id"] == summary.run_id and run["status"] == "finished"
    assert run["task"] == {"name": "echo", "definition_hash": task_.definition_hash, "version": task_.version(dataset)}
    assert run["dataset"]["version"] == dataset.version and run["dataset"]["samples"] == 6
    assert run["target"] == {"model": "fake-model", "base_url": upstream.base_url}
    assert "git_commit" in run and run["started_at"] and run["finished_at"]
    assert run["counts"] == {"items": 12, "scored": 12, "errors": 0, "cached": 0, "called": 12}
    assert run["tokens"] == {"prompt": 24, "completion": 24, "total": 48}
    assert run["errors"] == []


async def test_rerun_is_served_from_the_cache(upstream: FakeUpstream, tmp_path: Path) -> None:
    task_ = load_task(write_task(tmp_path))
    first = await run_task(task_, run_dir=tmp_path / "a", progress=False)
    assert upstream.calls == 6

    again = await run_task(task_, run_dir=tmp_path / "b", progress=False)
    assert upstream.calls == 6, "a rerun makes no upstream call"
    assert (again.cached, again.called, again.tokens.total) == (6, 0, 0)
    assert again.metrics == first.metrics
    assert (
        load_results(tmp_path / "b" / "results.jsonl").scores == load_results(tmp_path / "a" / "results.jsonl").scores
    )

    same_dir = await run_task(task_, run_dir=tmp_path / "a", progress=False)
    assert (same_dir.skipped, same_dir.cached, same_dir.called, same_dir.run_id) == (6, 0, 0, first.run_id)

    changed = load_task(write_task(tmp_path, extra="epochs: 1\n").parent / "task.yaml").model_copy(
        update={"prompt": "Q: {{ question }}"}
    )
    await run_task(changed, run_dir=tmp_path / "c", progress=False)
    assert upstream.calls == 12, "a changed template is a new task version"


async def test_an_interrupted_run_resumes_and_skips_finished_items(
    upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.delay_s = 0.02
    task_ = load_task(write_task(tmp_path, n=40, extra="max_concurrency: 2\n"))
    run_dir = tmp_path / "run"
    results = run_dir / "results.jsonl"

    running = asyncio.create_task(run_task(task_, run_dir=run_dir, progress=False))
    for _ in range(1000):  # until six items are written (at most 10 s)
        if results.exists() and len(results.read_text().splitlines()) >= 6:
            break
        await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    finished = len(results.read_text().splitlines())
    first = json.loads((run_dir / "run.json").read_text())
    assert first["status"] == "interrupted" and 6 <= finished < 40

    # a fresh cache, so every call the rerun makes is visible upstream
    monkeypatch.setenv("GOLDENPATH_HOME", str(tmp_path / "other-home"))
    calls = upstream.calls
    summary = await run_task(task_, run_dir=run_dir, progress=False)
    assert upstream.calls - calls == 40 - finished
    assert (summary.status, summary.skipped, summary.scored, summary.run_id) == (
        "finished",
        finished,
        40,
        first["run_id"],
    )
    assert len(load_results(results).item_ids) == 40
    assert json.loads((run_dir / "run.json").read_text())["resumed_at"]


async def test_429_is_retried_and_item_errors_are_recorded(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.throttle = 1
    questions = ["one", "BAD two", "three"]
    task_ = load_task(write_task(tmp_path, questions=questions))
    summary = await run_task(task_, run_dir=tmp_path / "run", progress=False)

    assert (summary.scored, summary.errors) == (2, 1)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    [error] = run["errors"]
    assert error["item_id"] == "q1" and error["epoch"] == 0
    assert "BadRequestError" in error["error"] and "400" in error["error"] and "refused" in error["error"]
    assert upstream.calls == 4, "one 429 retried, one refusal not retried"

    again = await run_task(task_, run_dir=tmp_path / "run", progress=False)
    assert (again.skipped, again.called, again.errors) == (2, 0, 1)
    assert upstream.calls == 5, "the rerun retries only the failed item"


async def test_template_errors_name_the_sample_and_field(upstream: FakeUpstream, tmp_path: Path) -> None:
    task_ = load_task(write_task(tmp_path)).model_copy(update={"prompt": "{{ questoin }}"})
    with pytest.raises(TaskError, match=r"sample 'q0': prompt: 'questoin' is undefined \(input fields: question\)"):
        await run_task(task_, run_dir=tmp_path / "run", progress=False)
    assert upstream.calls == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("target: {}", "task.yaml: invalid task: target.model: Field required"),
        ("target: {model: m, base_url: ftp://x}", "target.base_url: String should match pattern"),
        ("sampling: {temperature: 5}", "sampling.temperature: Input should be less than or equal to 2"),
        ("scorers: [{name: nope}]", "scorers.0: unknown scorer 'nope'"),
        ("scorers: [{name: regex, params: {patern: x}}]", "scorers.0: scorer 'regex': got an unexpected keyword"),
        ("scorers: [{name: contains}, {name: contains}]", "scorers[1] and scorers[0] are both 'contains'"),
        ('prompt: "{{ question"', "prompt: template syntax error on line 1"),
        ("messages: [{role: user, content: hi}]", "give prompt or messages, not both"),
        ("dataset: squad", "dataset: 'squad' is neither a .jsonl or .csv path nor a built-in dataset"),
        ("epochs: 0", "epochs: Input should be greater than or equal to 1"),
        ("temperature: 0", "temperature: Extra inputs are not permitted"),
    ],
)
def test_yaml_errors_name_the_file_and_field(tmp_path: Path, change: str, message: str) -> None:
    path = write_task(tmp_path)
    key = change.split(":")[0]
    lines, skipping = [], False  # drop the replaced key with its indented block
    for line in path.read_text().splitlines():
        if line.startswith(key + ":"):
            skipping = True
            continue
        if skipping and line.startswith(" "):
            continue
        skipping = False
        lines.append(line)
    path.write_text("\n".join([*lines, change]) + "\n")
    with pytest.raises(TaskError) as caught:
        load_task(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"missing\.yaml: cannot read task file"):
        load_task(tmp_path / "missing.yaml")
    (tmp_path / "t.yaml").write_text("name: [unclosed\n")
    with pytest.raises(TaskError, match=r"t\.yaml:2: not valid YAML"):
        load_task(tmp_path / "t.yaml")
    (tmp_path / "t.yaml").write_text("- a list\n")
    with pytest.raises(TaskError, match=r"t\.yaml: \(top level\): expected a mapping"):
        load_task(tmp_path / "t.yaml")


def test_messages_templates_and_builtin_datasets() -> None:
    made = Task.model_validate(
        {
            "name": "squad",
            "dataset": "squad_v2",
            "limit": 3,
            "messages": [
                {"role": "system", "content": "Answer from the context."},
                {"role": "user", "content": "{{ context[:20] }}|{{ question }}|{{ sample.metadata.title }}"},
            ],
            "target": {"model": "m", "base_url": "http://127.0.0.1:1/v1"},
            "scorers": [{"name": "squad"}],
        }
    )
    dataset = made.load_dataset()
    assert len(dataset) == 3
    first = dataset.samples[0]
    assert made.render(dataset.samples)[first.id] == [
        {"role": "system", "content": "Answer from the context."},
        {
            "role": "user",
            "content": f"{first.input['context'][:20]}|{first.input['question']}|{first.metadata['title']}",  # type: ignore[index,call-overload]
        },
    ]


def test_task_decorator_and_version() -> None:
    @task
    def tiny_echo(model: str = "m") -> Task:
        return Task(
            name="tiny_echo",
            dataset="squad_v2",
            limit=2,
            prompt="{{ question }}",
            target={"model": model, "base_url": "http://127.0.0.1:1/v1"},
            scorers=[{"name": "squad"}],
        )

    made = create_task("tiny_echo")
    assert made.name == "tiny_echo" and create_task("tiny_echo").definition_hash == made.definition_hash
    assert create_task("tiny_echo", model="other").definition_hash != made.definition_hash
    renamed = made.model_copy(update={"name": "renamed", "max_concurrency": 3})
    assert renamed.definition_hash == made.definition_hash
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        create_task("nope")
    with pytest.raises(TaskError, match="task 'tiny_echo'"):
        create_task("tiny_echo", wrong=1)


def test_cli_run_export_report_and_gate(upstream: FakeUpstream, tmp_path: Path) -> None:
    runner = CliRunner()
    path = write_task(tmp_path)
    run_dir = tmp_path / "run"
    ran = runner.invoke(run_command, [str(path), "--run-dir", str(run_dir), "--quiet"])
    assert ran.exit_code == 0, ran.output
    assert f"in {run_dir}" in ran.stdout and "6/6 items scored, 0 failed" in ran.stdout
    assert "exact_match" in ran.stdout and "0.6667" in ran.stdout

    exported = tmp_path / "export.jsonl"
    out = runner.invoke(export_command, [str(run_dir), "-o", str(exported)])
    assert out.exit_code == 0, out.output
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert len(lines) == 6 and set(lines[0]) == {"item_id", "epoch", "scores"}

    gate = tmp_path / "gate.yaml"
    gate.write_text("metrics:\n  exact_match:\n    min: 0.5\n")
    gated = runner.invoke(gate_command, [str(gate), "--candidate", str(exported), "--out-dir", str(tmp_path / "g")])
    assert gated.exit_code == 0, gated.output

    report = runner.invoke(report_command, [str(run_dir)])
    assert report.exit_code == 0, report.output
    assert "task echo" in report.stdout and "95% CI" in report.stdout
    assert any(line.startswith("exact_match") and " to " in line for line in report.stdout.splitlines())

    default_dir = runner.invoke(run_command, [str(path), "--quiet"])
    assert default_dir.exit_code == 0 and "home/evals/runs/echo-" in default_dir.stdout
    assert "6 from the cache, 0 called" in default_dir.stdout

    bad = runner.invoke(run_command, [str(tmp_path / "nope.yaml")])
    assert bad.exit_code == 2 and "cannot read task file" in bad.stderr


async def test_a_changed_task_needs_no_resume_and_progress_goes_to_stderr(
    upstream: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task_ = load_task(write_task(tmp_path))
    run_dir = tmp_path / "run"
    await run_task(task_, run_dir=run_dir)
    assert "6/6 items" in capsys.readouterr().err

    changed = task_.model_copy(update={"prompt": "Q: {{ question }}"})
    with pytest.raises(TaskError, match="holds a run of another task version"):
        await run_task(changed, run_dir=run_dir, progress=False)
    fresh = await run_task(changed, run_dir=run_dir, resume=False, progress=False)
    assert (fresh.scored, fresh.called, fresh.metrics["exact_match"]) == (6, 6, 0.0)
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == 6
