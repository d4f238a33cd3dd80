"""The repeat statistics (pyinstrument.stats) against scipy's, on fixed data."""

from __future__ import annotations

import random

import pytest

from pyinstrument import stats

scipy_stats = pytest.importorskip("scipy.stats")
numpy = pytest.importorskip("numpy")

RANDOM = random.Random(20261206)
SAMPLES = [
    ([RANDOM.random() for _ in range(n1)], [RANDOM.random() + shift for _ in range(n2)])
    for n1, n2, shift in [(3, 4, 0.0), (5, 5, 0.5), (10, 10, 0.2), (10, 10, 1.0), (7, 12, 0.3), (20, 20, 0.1)]
]
# ties, as the per-run times of a node that some runs never reached (0.0) have
TIED = [([0, 0, 0, 1, 2, 2, 3], [0, 1, 1, 4, 4, 5]), ([0.0] * 6 + [0.1] * 4, [0.0] * 2 + [0.1] * 8)]


@pytest.mark.parametrize("x, y", SAMPLES)
def test_the_exact_mann_whitney_test_is_scipys(x, y):
    u, p = stats.mann_whitney_u(x, y, method="exact")
    expected = scipy_stats.mannwhitneyu(x, y, method="exact", alternative="two-sided")
    assert u == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue, rel=1e-9)


@pytest.mark.parametrize("x, y", SAMPLES + TIED)
def test_the_asymptotic_mann_whitney_test_is_scipys(x, y):
    u, p = stats.mann_whitney_u(x, y, method="asymptotic")
    expected = scipy_stats.mannwhitneyu(x, y, method="asymptotic", alternative="two-sided", use_continuity=True)
    assert u == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue, rel=1e-9)


def test_auto_uses_the_exact_test_without_ties_and_the_corrected_one_with_them():
    x, y = SAMPLES[2]
    assert stats.mann_whitney_u(x, y) == stats.mann_whitney_u(x, y, method="exact")
    x, y = TIED[1]
    assert stats.mann_whitney_u(x, y) == stats.mann_whitney_u(x, y, method="asymptotic")
    assert stats.mann_whitney_u([1.0] * 5, [1.0] * 5)[1] == 1.0  # all equal: nothing to tell apart


@pytest.mark.parametrize("n", [1, 2, 3, 4, 10, 11, 37])
def test_quartiles_are_numpys_default_percentiles(n):
    values = [RANDOM.gauss(0, 1) for _ in range(n)]
    low, median, high = numpy.percentile(values, [25, 50, 75])
    assert stats.quartiles(values) == pytest.approx((low, median, high), rel=1e-12, abs=1e-12)
    assert stats.quantile(values, 0.95) == pytest.approx(numpy.percentile(values, 95), rel=1e-12, abs=1e-12)


def test_holm_adjusts_as_its_definition_says():
    p = [0.01, 0.04, 0.03, 0.2, 0.005]
    # sorted: 0.005*5, 0.01*4, 0.03*3, 0.04*2, 0.2*1, each at least the one before
    assert stats.holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.2, 0.025])
    assert stats.holm([]) == []
    assert stats.holm([0.9, 0.8]) == [1.0, 1.0]
