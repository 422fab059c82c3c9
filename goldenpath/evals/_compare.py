"""Paired comparison of two runs, metric by metric."""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from goldenpath.evals._results import RunResults
from goldenpath.evals._stats import (
    bootstrap_ci,
    bootstrap_ci_binary,
    holm,
    mcnemar_exact,
    sign_flip_pvalue,
    tango_noninferiority,
)

Method = Literal["mcnemar-exact", "tango-score", "sign-flip"]
WORST_SHOWN = 10
_TIE = 1e-12


@dataclass(frozen=True)
class MetricSpec:
    """How to judge one metric: its direction, the tolerated drop and the confidence."""

    higher_is_better: bool = True
    max_drop: float = 0.0
    confidence: float = 0.95


@dataclass(frozen=True)
class ItemChange:
    """One paired item: its item means in both runs and the change (candidate minus baseline)."""

    item_id: str
    candidate: float
    baseline: float

    @property
    def change(self) -> float:
        return self.candidate - self.baseline


@dataclass(frozen=True)
class MetricComparison:
    """The paired comparison of one metric.

    ``mean_diff`` and the CI are candidate minus baseline in the metric's units (negative is worse
    for higher-is-better metrics). ``p_value`` is one-sided, for "worse by more than ``max_drop``";
    ``adjusted_p_value`` is after Holm's correction across the compared metrics (equal to
    ``p_value`` without it).
    """

    metric: str
    binary: bool
    method: Method
    spec: MetricSpec
    n_paired: int
    epochs: int
    candidate_mean: float
    baseline_mean: float
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    adjusted_p_value: float
    improved: int
    regressed: int
    unchanged: int
    worst: tuple[ItemChange, ...]
    exact: bool

    @property
    def significant_regression(self) -> bool:
        """The data show, at the spec's confidence, a drop larger than ``max_drop``."""
        return self.n_paired > 0 and self.adjusted_p_value < alpha(self.spec.confidence)


@dataclass(frozen=True)
class Comparison:
    """Every compared metric plus the pairing counts (items present in one run only are left out)."""

    metrics: dict[str, MetricComparison]
    candidate_items: int
    baseline_items: int
    paired_items: int
    only_in_candidate: int
    only_in_baseline: int
    missing_in_candidate: tuple[str, ...]
    missing_in_baseline: tuple[str, ...]


def alpha(confidence: float) -> float:
    """``1 - confidence``, rounded so that 0.95 gives exactly 0.05 (p = 0.05 is then not below it)."""
    return round(1.0 - confidence, 12)


def _seed_sequence(seed: int, metric: str) -> np.random.SeedSequence:
    # Per metric, so a metric's numbers do not depend on which other metrics are compared.
    return np.random.SeedSequence([seed, zlib.crc32(metric.encode("utf-8"))])


def compare_metric(
    metric: str,
    candidate: RunResults,
    baseline: RunResults,
    spec: MetricSpec,
    *,
    seed: int = 0,
    resamples: int = 10_000,
) -> MetricComparison:
    """Compare one metric present in both runs, on the items that have it in both.

    Repeats are aggregated per item first (the mean over epochs), and the tests run on the item
    means, so items, not epochs, are the independent units. A binary metric whose item means are
    all 0 or 1 is tested with McNemar's exact test (``max_drop`` 0) or Tango's score test
    (``max_drop`` > 0); anything else with the sign-flip permutation test.
    """
    cand = candidate.item_means(metric)
    base = baseline.item_means(metric)
    ids = sorted(cand.keys() & base.keys())
    c = np.array([cand[i] for i in ids], dtype=np.float64)
    b = np.array([base[i] for i in ids], dtype=np.float64)
    n = len(ids)
    direction = 1.0 if spec.higher_is_better else -1.0
    improvement = direction * (c - b)
    improved = int(np.count_nonzero(improvement > _TIE))
    regressed = int(np.count_nonzero(improvement < -_TIE))
    boot_rng, perm_rng = (np.random.default_rng(s) for s in _seed_sequence(seed, metric).spawn(2))
    binary = candidate.is_binary(metric) and baseline.is_binary(metric)
    zero_one = binary and bool(np.all((c == 0.0) | (c == 1.0)) and np.all((b == 0.0) | (b == 1.0)))
    exact = True
    method: Method
    if zero_one:
        up = int(np.count_nonzero(c > b))
        down = int(np.count_nonzero(c < b))
        ci = bootstrap_ci_binary(up, down, n, spec.confidence, boot_rng, resamples)
        if spec.max_drop == 0.0:
            method, p = "mcnemar-exact", mcnemar_exact(regressed, improved)
        else:
            method, p, exact = "tango-score", tango_noninferiority(regressed, improved, n, spec.max_drop), False
    else:
        ci = bootstrap_ci(c - b, spec.confidence, boot_rng, resamples)
        method = "sign-flip"
        p, exact = sign_flip_pvalue(improvement + spec.max_drop, perm_rng, resamples)
    order = np.argsort(improvement, kind="stable")[: min(WORST_SHOWN, regressed)]
    epochs = max((len(run.scores[metric][i]) for run in (candidate, baseline) for i in ids), default=0)
    return MetricComparison(
        metric=metric,
        binary=binary,
        method=method,
        spec=spec,
        n_paired=n,
        epochs=epochs,
        candidate_mean=float(c.mean()) if n else math.nan,
        baseline_mean=float(b.mean()) if n else math.nan,
        mean_diff=float((c - b).mean()) if n else math.nan,
        ci_low=ci[0],
        ci_high=ci[1],
        p_value=p,
        adjusted_p_value=p,
        improved=improved,
        regressed=regressed,
        unchanged=n - improved - regressed,
        worst=tuple(ItemChange(ids[k], float(c[k]), float(b[k])) for k in order),
        exact=exact,
    )


def compare_runs(
    candidate: RunResults,
    baseline: RunResults,
    specs: Mapping[str, MetricSpec] | None = None,
    *,
    metrics: list[str] | None = None,
    holm_correction: bool = True,
    family: Collection[str] | None = None,
    seed: int = 0,
    resamples: int = 10_000,
) -> Comparison:
    """Compare ``metrics`` (default: every metric in both runs) paired by item id.

    ``specs`` gives each metric's direction, margin and confidence (default :class:`MetricSpec`).
    With ``holm_correction`` the p-values of the metrics in ``family`` (default: every compared
    metric) are Holm-adjusted together; the others keep their raw p-value.
    Metrics absent from a run are listed in ``missing_in_candidate`` / ``missing_in_baseline``.
    """
    specs = specs or {}
    names = metrics if metrics is not None else sorted(set(candidate.metrics) | set(baseline.metrics))
    present = [m for m in names if m in candidate.scores and m in baseline.scores]
    results = [
        compare_metric(m, candidate, baseline, specs.get(m, MetricSpec()), seed=seed, resamples=resamples)
        for m in present
    ]
    if holm_correction:
        tested = [r for r in results if r.n_paired > 0 and (family is None or r.metric in family)]
        adjusted = dict(zip([r.metric for r in tested], holm([r.p_value for r in tested]), strict=True))
        results = [replace(r, adjusted_p_value=adjusted.get(r.metric, r.p_value)) for r in results]
    cand_ids, base_ids = set(candidate.item_ids), set(baseline.item_ids)
    return Comparison(
        metrics={r.metric: r for r in results},
        candidate_items=len(cand_ids),
        baseline_items=len(base_ids),
        paired_items=len(cand_ids & base_ids),
        only_in_candidate=len(cand_ids - base_ids),
        only_in_baseline=len(base_ids - cand_ids),
        missing_in_candidate=tuple(m for m in names if m not in candidate.scores),
        missing_in_baseline=tuple(m for m in names if m not in baseline.scores),
    )
