"""Evaluation: paired comparisons of per-item results and statistical quality gates for CI."""

from goldenpath.evals._cli import compare_command, gate_command
from goldenpath.evals._compare import Comparison, ItemChange, MetricComparison, MetricSpec, compare_runs
from goldenpath.evals._gate import (
    Gate,
    GateError,
    GateResult,
    MetricRule,
    RuleResult,
    evaluate_gate,
    load_gate,
    run_gate,
)
from goldenpath.evals._results import EvalInputError, ResultsError, RunResults, load_results

__all__ = [
    "Comparison",
    "EvalInputError",
    "Gate",
    "GateError",
    "GateResult",
    "ItemChange",
    "MetricComparison",
    "MetricRule",
    "MetricSpec",
    "ResultsError",
    "RuleResult",
    "RunResults",
    "compare_command",
    "compare_runs",
    "evaluate_gate",
    "gate_command",
    "load_gate",
    "load_results",
    "run_gate",
]
