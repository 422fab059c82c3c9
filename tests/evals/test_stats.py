"""The statistics against scipy, hand-worked values and their own seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import binomtest

from goldenpath.evals import _stats
from goldenpath.evals._stats import (
    bootstrap_ci,
    bootstrap_ci_binary,
    holm,
    mcnemar_exact,
    sign_flip_pvalue,
    tango_noninferiority,
    tango_restricted_mle,
)


@pytest.mark.parametrize(("regressed", "improved"), [(10, 2), (2, 10), (5, 5), (30, 17), (0, 4), (1, 0), (120, 95)])
def test_mcnemar_equals_scipy_binomtest(regressed: int, improved: int) -> None:
    expected = binomtest(regressed, regressed + improved, 0.5, alternative="greater").pvalue
    assert mcnemar_exact(regressed, improved) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_hand_worked_and_no_discordant_pairs() -> None:
    # P(X >= 10) for X ~ Binomial(12, 1/2) = (C(12,10) + C(12,11) + C(12,12)) / 2**12.
    assert mcnemar_exact(10, 2) == pytest.approx((66 + 12 + 1) / 4096, rel=1e-12)
    assert mcnemar_exact(0, 0) == 1.0


@pytest.mark.parametrize(
    ("regressed", "improved", "n", "margin"), [(30, 10, 200, 0.05), (5, 20, 100, 0.1), (0, 0, 50, 0.02)]
)
def test_tango_restricted_mle_maximizes_the_constrained_likelihood(
    regressed: int, improved: int, n: int, margin: float
) -> None:
    def negative_log_likelihood(q: float) -> float:
        return -(
            regressed * math.log(q + margin)
            + improved * math.log(q)
            + (n - regressed - improved) * math.log(1 - 2 * q - margin)
        )

    best = minimize_scalar(
        negative_log_likelihood, bounds=(1e-12, (1 - margin) / 2 - 1e-12), method="bounded", options={"xatol": 1e-12}
    )
    assert tango_restricted_mle(regressed, improved, n, margin) == pytest.approx(best.x, abs=1e-6)


def test_tango_at_margin_zero_is_the_asymptotic_mcnemar_test() -> None:
    z = (30 - 17) / math.sqrt(30 + 17)
    assert tango_noninferiority(30, 17, 400, 0.0) == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)))


def test_tango_margin_makes_the_test_more_lenient() -> None:
    strict, lenient = tango_noninferiority(40, 20, 400, 0.0), tango_noninferiority(40, 20, 400, 0.03)
    assert strict < 0.05 < lenient
    assert tango_noninferiority(40, 20, 400, 1.0) == 1.0


def test_sign_flip_exact_enumeration() -> None:
    rng = np.random.default_rng(0)
    # The observed mean is the smallest of the 2**4 sign patterns: p = 1/16.
    assert sign_flip_pvalue(np.array([-1.0, -2.0, -3.0, -4.0]), rng) == (1 / 16, True)
    assert sign_flip_pvalue(np.array([1.0, 2.0, 3.0, 4.0]), rng) == (1.0, True)
    # Zeros flip to zeros: every pattern ties with the observed mean.
    assert sign_flip_pvalue(np.zeros(5), rng) == (1.0, True)


def test_sign_flip_monte_carlo_is_seeded_and_close_to_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(3).normal(-0.4, 1.0, size=14)
    exact, is_exact = sign_flip_pvalue(values, np.random.default_rng(0))
    assert is_exact
    monkeypatch.setattr(_stats, "EXACT_SIGN_FLIP_MAX_N", 0)
    first, is_exact = sign_flip_pvalue(values, np.random.default_rng(7), resamples=20_000)
    assert not is_exact
    assert first == sign_flip_pvalue(values, np.random.default_rng(7), resamples=20_000)[0]
    assert first == pytest.approx(exact, abs=0.01)


def test_bootstrap_is_seeded_and_covers_the_mean() -> None:
    diffs = np.random.default_rng(1).normal(0.1, 1.0, size=300)
    low, high = bootstrap_ci(diffs, 0.95, np.random.default_rng(5), resamples=4000)
    assert (low, high) == bootstrap_ci(diffs, 0.95, np.random.default_rng(5), resamples=4000)
    assert low < diffs.mean() < high
    assert (high - low) == pytest.approx(2 * 1.96 * diffs.std() / math.sqrt(300), rel=0.1)


def test_binary_bootstrap_matches_resampling_items() -> None:
    diffs = np.array([1.0] * 40 + [-1.0] * 70 + [0.0] * 290)
    by_items = bootstrap_ci(diffs, 0.9, np.random.default_rng(2), resamples=20_000)
    by_counts = bootstrap_ci_binary(40, 70, 400, 0.9, np.random.default_rng(2), resamples=20_000)
    assert by_counts == pytest.approx(by_items, abs=0.006)
    assert by_counts == bootstrap_ci_binary(40, 70, 400, 0.9, np.random.default_rng(2), resamples=20_000)


def test_holm_hand_worked() -> None:
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.2]) == [0.2]
    assert holm([]) == []
