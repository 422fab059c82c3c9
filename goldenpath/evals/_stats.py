"""Paired tests for "is the candidate worse than the baseline by more than a margin?".

Every test here is one-sided. Inputs are per-item *improvements* (candidate minus baseline, with the
sign flipped for lower-is-better metrics), so "worse" is always negative, and the null hypothesis
is ``mean improvement >= -margin``: a small p-value is evidence that the candidate lost more than
the margin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

#: Up to this many items the sign-flip test enumerates all 2**n sign patterns.
EXACT_SIGN_FLIP_MAX_N = 16
_CHUNK_ELEMENTS = 4_000_000


def mcnemar_exact(regressed: int, improved: int) -> float:
    """Exact one-sided McNemar p-value: the binomial tail of the discordant pairs.

    Under H0 (a discordant pair is as likely to be a regression as an improvement) the number of
    regressions among the ``regressed + improved`` discordant pairs is Binomial(m, 1/2); the
    p-value is P(X >= regressed). No discordant pairs is no evidence: p = 1.
    """
    m = regressed + improved
    if m == 0:
        return 1.0
    # scipy.stats costs about a second to import; the CLI imports this package for every command.
    from scipy.stats import binomtest  # type: ignore[import-untyped]

    return float(binomtest(regressed, m, 0.5, alternative="greater").pvalue)


def tango_restricted_mle(regressed: int, improved: int, n: int, margin: float) -> float:
    """The maximum-likelihood P(improvement) under the constraint P(regression) - P(improvement) = margin.

    Tango (1998), Statistics in Medicine 17:891-908: the root of a quadratic.
    """
    a = 2.0 * n
    b = -regressed - improved + (2.0 * n - regressed + improved) * margin
    c = -improved * margin * (1.0 - margin)
    return (-b + math.sqrt(max(b * b - 4.0 * a * c, 0.0))) / (2.0 * a)


def tango_noninferiority(regressed: int, improved: int, n: int, margin: float) -> float:
    """One-sided p-value of Tango's score test of H0: P(regression) - P(improvement) <= margin.

    The paired-binary analogue of McNemar's test with a margin (``margin = 0`` gives the asymptotic
    McNemar test). The statistic is standardized under the restricted MLE, which keeps its size
    near nominal for moderate n where a Wald statistic does not.
    """
    if n == 0 or margin >= 1.0:
        return 1.0
    q = tango_restricted_mle(regressed, improved, n, margin)
    variance = n * (2.0 * q + margin * (1.0 - margin))
    if variance <= 0.0:
        return 1.0
    z = (regressed - improved - n * margin) / math.sqrt(variance)
    return normal_sf(z)


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def sign_flip_pvalue(
    shifted: NDArray[np.float64], rng: np.random.Generator, resamples: int = 10_000
) -> tuple[float, bool]:
    """One-sided sign-flip permutation p-value for H0: the values are symmetric about 0 (mean >= 0).

    ``shifted`` holds per-item improvements plus the margin. The statistic is their mean; the
    p-value is the share of sign patterns whose mean is at most the observed one. With at most
    :data:`EXACT_SIGN_FLIP_MAX_N` items every pattern is enumerated (exact); beyond that
    ``resamples`` random patterns are drawn and the p-value is ``(1 + hits) / (1 + resamples)``,
    which never understates it. Returns ``(p, exact)``.
    """
    n = len(shifted)
    if n == 0:
        return 1.0, True
    observed = float(shifted.mean())
    tolerance = 1e-12 * max(1.0, float(np.abs(shifted).max()))
    if n <= EXACT_SIGN_FLIP_MAX_N:
        patterns = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        means = (shifted.sum() - 2.0 * (patterns @ shifted)) / n
        return float(np.count_nonzero(means <= observed + tolerance)) / 2**n, True
    hits = 0
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        signs = rng.integers(0, 2, size=(rows, n)) * 2.0 - 1.0
        hits += int(np.count_nonzero((signs @ shifted) / n <= observed + tolerance))
    return (1.0 + hits) / (1.0 + resamples), False


def bootstrap_ci(
    differences: NDArray[np.float64], confidence: float, rng: np.random.Generator, resamples: int = 10_000
) -> tuple[float, float]:
    """Two-sided percentile CI of the mean paired difference, resampling items with replacement."""
    n = len(differences)
    if n == 0:
        return math.nan, math.nan
    means = np.empty(resamples)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        means[start : start + rows] = differences[rng.integers(0, n, size=(rows, n))].mean(axis=1)
    return _percentiles(means, confidence)


def bootstrap_ci_binary(
    up: int, down: int, n: int, confidence: float, rng: np.random.Generator, resamples: int = 10_000
) -> tuple[float, float]:
    """:func:`bootstrap_ci` for differences in {-1, 0, +1}: the same distribution, drawn as counts.

    Resampling n items whose difference is +1 (``up``), -1 (``down``) or 0 is a multinomial draw of
    the three counts, so the bootstrap costs O(resamples) instead of O(resamples * n).
    """
    if n == 0:
        return math.nan, math.nan
    counts = rng.multinomial(n, [up / n, down / n, (n - up - down) / n], size=resamples)
    return _percentiles((counts[:, 0] - counts[:, 1]) / n, confidence)


def _percentiles(means: NDArray[np.float64], confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    Sorted ascending, the i-th smallest (from 0) of m is multiplied by m - i; the running maximum
    keeps the adjusted values monotone; each is capped at 1. Rejecting every hypothesis whose
    adjusted p-value is below alpha controls the family-wise error rate at alpha.
    """
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted
