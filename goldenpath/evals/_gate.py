"""Quality gates: absolute thresholds and no-regression rules from a YAML file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from goldenpath.config import read_yaml
from goldenpath.evals._compare import Comparison, MetricSpec, alpha, compare_runs
from goldenpath.evals._report import write_reports
from goldenpath.evals._results import EvalInputError, RunResults
from goldenpath.evals._runner import load_run_results


class GateError(EvalInputError):
    """The gate file cannot be used; the message names the file, the field and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricRule(_Strict):
    """The rules on one metric. At least one of ``min``, ``max`` and ``max_drop`` is required."""

    min: float | None = Field(default=None, description="The candidate's mean must be at least this.")
    max: float | None = Field(default=None, description="The candidate's mean must be at most this.")
    max_drop: float | None = Field(
        default=None,
        ge=0,
        description="The largest tolerated loss against the baseline, in the metric's units; the rule "
        "fails when the data show, at `confidence`, a larger loss.",
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    higher_is_better: bool = Field(default=True, description="False for latency, cost, error rates.")

    @model_validator(mode="after")
    def _consistent(self) -> MetricRule:
        if self.min is None and self.max is None and self.max_drop is None:
            raise ValueError("give at least one of min, max, max_drop")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Gate(_Strict):
    """A gate file: rules per metric, plus how the no-regression rules are tested."""

    metrics: dict[str, MetricRule] = Field(min_length=1)
    holm: bool = Field(default=True, description="Holm-correct the no-regression rules as one family.")
    seed: int = Field(default=0, description="Seed of the bootstrap and permutation draws.")
    resamples: int = Field(default=10_000, ge=1_000, le=1_000_000)

    @model_validator(mode="after")
    def _names(self) -> Gate:
        if any(not name for name in self.metrics):
            raise ValueError("metric names must be non-empty")
        return self


RuleKind = Literal["min", "max", "max_drop"]


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict. ``observed`` is the candidate mean (min, max) or candidate minus baseline."""

    metric: str
    rule: RuleKind
    passed: bool
    threshold: float
    observed: float | None
    message: str
    p_value: float | None = None
    adjusted_p_value: float | None = None
    alpha: float | None = None

    @property
    def name(self) -> str:
        return f"{self.metric} {self.rule}"


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict: every rule, and the comparison it was decided on (None without a baseline)."""

    gate: Gate
    rules: tuple[RuleResult, ...]
    comparison: Comparison | None
    candidate_source: str
    baseline_source: str | None

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)

    @property
    def failures(self) -> list[RuleResult]:
        return [r for r in self.rules if not r.passed]


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_gate(raw: Any, source: str) -> Gate:
    """Validate a parsed gate document; errors are one line naming ``source``, fields and reasons."""
    if not isinstance(raw, dict):
        kind = "an empty file" if raw is None else type(raw).__name__
        raise GateError(f"{source}: (top level): expected a mapping with a metrics key, got {kind}")
    try:
        return Gate.model_validate(raw)
    except ValidationError as exc:
        reasons = [f"{_field_path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        raise GateError(f"{source}: invalid gate: " + "; ".join(reasons)) from None


def load_gate(path: str | Path) -> Gate:
    """Read and validate a YAML gate file."""
    try:
        raw = read_yaml(path, "gate file")
    except ValueError as exc:
        raise GateError(str(exc)) from None
    return parse_gate(raw, str(path))


def _absolute(metric: str, rule: MetricRule, candidate: RunResults) -> list[RuleResult]:
    checks: list[tuple[RuleKind, float]] = []
    if rule.min is not None:
        checks.append(("min", rule.min))
    if rule.max is not None:
        checks.append(("max", rule.max))
    out = []
    for kind, threshold in checks:
        if metric not in candidate.scores:
            out.append(
                RuleResult(metric, kind, False, threshold, None, f"metric {metric!r} is missing from the candidate")
            )
            continue
        mean = candidate.mean(metric)
        passed = mean >= threshold if kind == "min" else mean <= threshold
        sign = ">=" if kind == "min" else "<="
        verdict = "" if passed else "not "
        message = f"candidate mean {mean:.4g} is {verdict}{sign} {threshold:g}"
        out.append(RuleResult(metric, kind, passed, threshold, mean, message))
    return out


def _no_regression(
    metric: str, rule: MetricRule, max_drop: float, candidate: RunResults, baseline: RunResults, comparison: Comparison
) -> RuleResult:
    for run, role in ((candidate, "candidate"), (baseline, "baseline")):
        if metric not in run.scores:
            return RuleResult(
                metric, "max_drop", False, max_drop, None, f"metric {metric!r} is missing from the {role}"
            )
    result = comparison.metrics[metric]
    level = alpha(rule.confidence)
    if result.n_paired == 0:
        return RuleResult(
            metric, "max_drop", False, max_drop, None, "no item has this metric in both runs", alpha=level
        )
    holm = f", Holm {result.adjusted_p_value:.3g}" if result.adjusted_p_value != result.p_value else ""
    p_text = f"p = {result.p_value:.3g}{holm}"
    ci = f"{rule.confidence * 100:g}% CI {result.ci_low:+.4g} to {result.ci_high:+.4g}"
    change = f"mean {result.mean_diff:+.4g} ({ci}; {result.method}, n = {result.n_paired}); {p_text}"
    if result.significant_regression:
        message = f"worse by more than {max_drop:g} at {rule.confidence * 100:g}% confidence: {change}"
    else:
        message = f"no evidence of a loss larger than {max_drop:g}: {change}"
    return RuleResult(
        metric,
        "max_drop",
        not result.significant_regression,
        max_drop,
        result.mean_diff,
        message,
        p_value=result.p_value,
        adjusted_p_value=result.adjusted_p_value,
        alpha=level,
    )


def evaluate_gate(
    gate: Gate,
    candidate: RunResults,
    baseline: RunResults | None,
) -> GateResult:
    """Apply the gate's rules to loaded runs.

    Absolute thresholds use the candidate's mean over all its items (item means over epochs); the
    no-regression rules use the paired comparison, Holm-corrected as one family when ``gate.holm``.
    """
    drop_rules = {m: r for m, r in gate.metrics.items() if r.max_drop is not None}
    if drop_rules and baseline is None:
        raise EvalInputError(f"the gate has max_drop rules ({', '.join(drop_rules)}) but no baseline was given")
    comparison = None
    if baseline is not None:
        specs = {
            m: MetricSpec(higher_is_better=r.higher_is_better, max_drop=r.max_drop or 0.0, confidence=r.confidence)
            for m, r in gate.metrics.items()
        }
        comparison = compare_runs(
            candidate,
            baseline,
            specs,
            metrics=list(gate.metrics),
            holm_correction=gate.holm,
            family=set(drop_rules),
            seed=gate.seed,
            resamples=gate.resamples,
        )
    rules: list[RuleResult] = []
    for metric, rule in gate.metrics.items():
        rules.extend(_absolute(metric, rule, candidate))
        if rule.max_drop is not None and baseline is not None and comparison is not None:
            rules.append(_no_regression(metric, rule, rule.max_drop, candidate, baseline, comparison))
    return GateResult(
        gate=gate,
        rules=tuple(rules),
        comparison=comparison,
        candidate_source=candidate.source,
        baseline_source=None if baseline is None else baseline.source,
    )


def run_gate(
    gate_path: str | Path,
    candidate_path: str | Path,
    baseline_path: str | Path | None,
    out_dir: str | Path,
) -> GateResult:
    """Load the gate and both runs (result files, run directories or run ids), decide, and write
    ``junit.xml``, ``summary.md`` and ``report.html`` into ``out_dir`` (created if needed). Raises
    :class:`EvalInputError` on bad input."""
    gate = load_gate(gate_path)
    candidate = load_run_results(candidate_path)
    baseline = None if baseline_path is None else load_run_results(baseline_path)
    result = evaluate_gate(gate, candidate, baseline)
    write_reports(result, Path(out_dir))
    return result
