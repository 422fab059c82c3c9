"""``goldenpath gate`` and ``goldenpath eval compare|run|export|report``: click commands the CLI registers."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
import numpy as np

from goldenpath.evals._compare import MetricSpec, _seed_sequence, compare_runs
from goldenpath.evals._gate import run_gate
from goldenpath.evals._report import HTML_FILE, JUNIT_FILE, MARKDOWN_FILE
from goldenpath.evals._results import EvalInputError, RunResults, load_results
from goldenpath.evals._runner import (
    RESULTS_FILE,
    RUN_FILE,
    default_cache_path,
    export_results,
    load_run_results,
    resolve_run,
    run_task,
)
from goldenpath.evals._scorers import detection_summary
from goldenpath.evals._stats import bootstrap_ci
from goldenpath.evals._targets import CollectionTarget, RetrievalTarget
from goldenpath.evals._task import TaskError, load_task

RUN_HELP = "a result file (JSONL), a run directory or a run id"

EXIT_FAIL = 1
EXIT_BAD_INPUT = 2


def _bad_input(exc: EvalInputError) -> NoReturn:
    click.echo(f"Error: {' '.join(str(exc).splitlines())}", err=True)
    raise SystemExit(EXIT_BAD_INPUT)


@click.command("gate")
@click.argument("gate", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--candidate", required=True, help=f"The candidate: {RUN_HELP}.")
@click.option("--baseline", help=f"The baseline: {RUN_HELP} (needed by max_drop rules).")
@click.option(
    "--out-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("gate-report"),
    show_default=True,
    help=f"Where {JUNIT_FILE}, {MARKDOWN_FILE} and {HTML_FILE} are written.",
)
def gate_command(gate: Path, candidate: str, baseline: str | None, out_dir: Path) -> None:
    """Check the candidate's results against the GATE file; exit 0 on pass, 1 on fail, 2 on bad input."""
    try:
        result = run_gate(gate, candidate, baseline, out_dir)
    except EvalInputError as exc:
        _bad_input(exc)
    for rule in result.rules:
        click.echo(f"{'PASS' if rule.passed else 'FAIL'}  {rule.name}: {rule.message}")
    verdict = "passed" if result.passed else f"FAILED ({len(result.failures)} of {len(result.rules)} rules)"
    click.echo(f"gate {verdict}; reports in {out_dir}/")
    raise SystemExit(0 if result.passed else EXIT_FAIL)


def _cell(value: float, signed: bool = False) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


@click.command("compare")
@click.argument("candidate")
@click.argument("baseline")
@click.option("--confidence", type=click.FloatRange(0.5, 1.0, min_open=True, max_open=True), default=0.95)
@click.option("--lower-is-better", "lower", multiple=True, help="A metric where lower is better (repeatable).")
@click.option("--no-holm", is_flag=True, help="Do not Holm-correct the p-values across metrics.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resamples", type=click.IntRange(1000, 1_000_000), default=10_000, show_default=True)
def compare_command(
    candidate: str, baseline: str, confidence: float, lower: tuple[str, ...], no_holm: bool, seed: int, resamples: int
) -> None:
    """Compare two runs paired by item: CANDIDATE against BASELINE, each a result file, a run directory
    or a run id.

    P(WORSE) is the one-sided p-value for "the candidate is worse"; CI is the bootstrap CI of the
    mean difference (candidate minus baseline); +/-/= counts items improved, regressed, unchanged.
    """
    try:
        cand, base = load_run_results(candidate), load_run_results(baseline)
    except EvalInputError as exc:
        _bad_input(exc)
    unknown = sorted(set(lower) - set(cand.metrics) - set(base.metrics))
    if unknown:
        _bad_input(EvalInputError(f"--lower-is-better names metrics in neither file: {', '.join(unknown)}"))
    specs = {m: MetricSpec(higher_is_better=m not in lower, confidence=confidence) for m in cand.metrics}
    comparison = compare_runs(cand, base, specs, holm_correction=not no_holm, seed=seed, resamples=resamples)
    click.echo(
        f"candidate {candidate}, baseline {baseline}: {comparison.paired_items} paired items "
        f"({comparison.only_in_candidate} only in the candidate, {comparison.only_in_baseline} only in the baseline)"
    )
    ci_head = f"{confidence * 100:g}% CI"
    head = (
        f"{'METRIC':<24}{'N':>6}  {'CANDIDATE':>10}{'BASELINE':>10}{'DIFF':>10}  {ci_head:<22}"
        f"{'P(WORSE)':>9}{'HOLM':>9}  {'+/-/=':<16}TEST"
    )
    click.echo(head)
    for m in comparison.metrics.values():
        ci = f"{_cell(m.ci_low, True)} to {_cell(m.ci_high, True)}"
        click.echo(
            f"{m.metric:<24}{m.n_paired:>6}  {_cell(m.candidate_mean):>10}{_cell(m.baseline_mean):>10}"
            f"{_cell(m.mean_diff, True):>10}  {ci:<22}{m.p_value:>9.3g}{m.adjusted_p_value:>9.3g}  "
            f"{f'{m.improved}/{m.regressed}/{m.unchanged}':<16}{m.method}"
        )
    for role, missing in (("candidate", comparison.missing_in_candidate), ("baseline", comparison.missing_in_baseline)):
        if missing:
            click.echo(f"not in the {role}: {', '.join(missing)}")


def _open_retriever(spec: str, target: CollectionTarget) -> RetrievalTarget:
    """``MODULE:FACTORY`` imported and called with the collection target."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise TaskError(f"--retriever {spec!r}: expected MODULE:FACTORY")
    try:
        factory: Any = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise TaskError(f"--retriever {spec!r}: {exc}") from None
    retriever: RetrievalTarget = factory(target)
    return retriever


def _detection_line(results: RunResults) -> str | None:
    """Precision, recall, F1 and FPR when the run has the detection scorer's tp/fp/fn/tn."""
    if not {"tp", "fp", "fn", "tn"} <= set(results.metrics):
        return None
    summary = detection_summary(results)

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    return (
        f"detection: precision {cell(summary.precision)}, recall {cell(summary.recall)}, F1 {cell(summary.f1)}, "
        f"FPR {cell(summary.fpr)} (tp {summary.tp}, fp {summary.fp}, fn {summary.fn}, tn {summary.tn})"
    )


@click.command("run")
@click.argument("task_ref", metavar="TASK")
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where results.jsonl and run.json go (default: $GOLDENPATH_HOME/evals/runs/NAME-VERSION).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Run only the dataset's first N samples.")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", help="The Ray cluster (default: a local one); with --backend ray.")
@click.option("--retriever", metavar="MODULE:FACTORY", help="Opens a collection target: FACTORY(target) -> search.")
@click.option("--no-resume", is_flag=True, help="Start the run directory afresh instead of skipping finished items.")
@click.option("--quiet", is_flag=True, help="No progress line on stderr.")
def run_command(
    task_ref: str,
    run_dir: Path | None,
    limit: int | None,
    backend: str,
    ray_address: str | None,
    retriever: str | None,
    no_resume: bool,
    quiet: bool,
) -> None:
    """Run TASK (a task YAML file, or builtin:NAME for a shipped suite); print the run and each metric's mean.

    Items already in the run directory are skipped, items in the cache cost no call. Failed items are
    recorded in run.json (and retried by the next run); exit 2 on a bad task file.
    """
    try:
        task = load_task(task_ref)
        if limit is not None:
            task = task.model_copy(update={"limit": limit})
        if ray_address is not None and backend != "ray":
            raise TaskError("--ray-address needs --backend ray")
        searcher = None
        if retriever is not None:
            if not isinstance(task.target, CollectionTarget):
                raise TaskError(f"--retriever is for a collection target; {task.name!r} has none")
            searcher = _open_retriever(retriever, task.target)
        if run_dir is None:
            version = task.version(task.load_dataset())
            run_dir = default_cache_path().parent / "runs" / f"{task.name}-{version[:12]}"
        summary = asyncio.run(
            run_task(
                task,
                run_dir=run_dir,
                retriever=searcher,
                resume=not no_resume,
                progress=not quiet,
                backend="ray" if backend == "ray" else "local",
                ray_address=ray_address,
            )
        )
    except EvalInputError as exc:
        _bad_input(exc)
    click.echo(f"run {summary.run_id} in {summary.run_dir}")
    click.echo(
        f"{summary.scored}/{summary.items} items scored, {summary.errors} failed; this run: {summary.skipped} "
        f"already done, {summary.cached} from the cache, {summary.called} called, {summary.tokens.total} tokens, "
        f"{summary.elapsed_s:.1f}s"
    )
    for metric, mean in sorted(summary.metrics.items()):
        click.echo(f"{metric:<32}{mean:.4g}")
    if summary.scored:
        detection = _detection_line(load_results(summary.run_dir / RESULTS_FILE))
        if detection is not None:
            click.echo(detection)
    if summary.errors:
        click.echo(f"{summary.errors} items failed; their errors are in {summary.run_dir / RUN_FILE}")


@click.command("export")
@click.argument("run")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="Output file (default stdout).")
def export_command(run: str, output: Path | None) -> None:
    """Write RUN's (a run directory or run id) {"item_id", "epoch", "scores"} JSONL, the result file
    `goldenpath gate` reads."""
    try:
        records = export_results(run)
    except EvalInputError as exc:
        _bad_input(exc)
    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"{len(records)} results written to {output}", err=True)


@click.command("report")
@click.argument("run")
@click.option("--confidence", type=click.FloatRange(0.5, 1.0, min_open=True, max_open=True), default=0.95)
@click.option("--seed", type=int, default=0, show_default=True)
def report_command(run: str, confidence: float, seed: int) -> None:
    """RUN's (a run directory or run id) provenance, and each metric's mean over items (epochs averaged
    per item first) with a bootstrap CI over items."""
    run_dir = Path(run)
    try:
        run_dir = resolve_run(run)
        results = load_results(run_dir / RESULTS_FILE)
        provenance = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except EvalInputError as exc:
        _bad_input(exc)
    except (OSError, ValueError) as exc:
        _bad_input(EvalInputError(f"{run_dir / RUN_FILE}: cannot read the run file: {exc}"))
    counts, task, dataset = provenance["counts"], provenance["task"], provenance["dataset"]
    click.echo(
        f"run {provenance['run_id']} ({provenance['status']}): task {task['name']} version {task['version'][:12]}, "
        f"dataset {dataset['name']} version {dataset['version'][:12]}, "
        f"target {_describe_target(provenance['target'])}, git {provenance.get('git_commit') or '-'}"
    )
    click.echo(
        f"{counts['scored']}/{counts['items']} items scored, {counts['errors']} failed, "
        f"{provenance['tokens']['total']} tokens"
    )
    ci_head = f"{confidence * 100:g}% CI"
    click.echo(f"{'METRIC':<32}{'N':>6}  {'MEAN':>10}  {ci_head}")
    for metric in results.metrics:
        means = results.item_means(metric)
        values = np.fromiter(means.values(), dtype=np.float64, count=len(means))
        rng = np.random.default_rng(_seed_sequence(seed, metric))
        low, high = bootstrap_ci(values, confidence, rng)
        click.echo(f"{metric:<32}{len(values):>6}  {results.mean(metric):>10.4g}  {_cell(low)} to {_cell(high)}")
    detection = _detection_line(results)
    if detection is not None:
        click.echo(detection)


def _describe_target(target: dict[str, Any]) -> str:
    if "collection" in target:
        return f"collection {target['collection']} (k {target['k']}, {target['mode']})"
    if "detector" in target:
        return f"detector {target['detector']}" + (f" at {target['base_url']}" if target.get("base_url") else "")
    if target.get("in_process"):
        return f"{target['model']} in process ({target.get('config') or 'embedded models'})"
    return f"{target['model']} at {target['base_url']}"
