"""The statistics of repeated runs: quartiles, and whether two sets of runs differ.

Small and dependency-free on purpose (a profiler's install must not pull in scipy); the
test suite checks every function here against scipy on fixed data.

- :func:`quartiles`: the median and the interquartile range, by linear interpolation
  between order statistics (numpy's and scipy's default, "type 7").
- :func:`mann_whitney_u`: the two-sided Mann–Whitney U test: exact when the samples are
  small and have no ties, else the normal approximation with tie and continuity correction.
- :func:`holm`: Holm–Bonferroni adjusted p-values, for a verdict on many nodes at once.
"""

from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Sequence, Tuple

#: exact p-values are computed while n1 * n2 is at most this (the count table grows with it)
EXACT_LIMIT = 400


class Quartiles(NamedTuple):
    low: float  # 25th percentile
    median: float
    high: float  # 75th percentile


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 ≤ q ≤ 1) of *values*, interpolating linearly between order statistics."""
    if not values:
        raise ValueError("quantile of no values")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    fraction = position - below
    return ordered[below] + (ordered[above] - ordered[below]) * fraction


def quartiles(values: Sequence[float]) -> Quartiles:
    return Quartiles(quantile(values, 0.25), quantile(values, 0.5), quantile(values, 0.75))


def _ranks(values: Sequence[float]) -> Tuple[List[float], List[int]]:
    """Each value's rank (ties get the mean of their ranks), and the sizes of the ties."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def mann_whitney_u(x: Sequence[float], y: Sequence[float], method: str = "auto") -> Tuple[float, float]:
    """The two-sided Mann–Whitney U test of *x* against *y*: (U of x, p-value).

    *method* is ``"exact"``, ``"asymptotic"`` or ``"auto"`` (exact when there are no ties
    and ``len(x) * len(y) <= EXACT_LIMIT``).
    """
    n1, n2 = len(x), len(y)
    if not n1 or not n2:
        raise ValueError("the Mann–Whitney test needs values on both sides")
    ranks, ties = _ranks(list(x) + list(y))
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    has_ties = any(t > 1 for t in ties)
    if method == "auto":
        method = "exact" if not has_ties and n1 * n2 <= EXACT_LIMIT else "asymptotic"
    if method == "exact":
        return u1, _exact_p(u1, n1, n2)
    if method != "asymptotic":
        raise ValueError(f"unknown method {method!r}")
    n = n1 + n2
    mean = n1 * n2 / 2
    tie_term = sum(t**3 - t for t in ties) / (n * (n - 1))
    variance = n1 * n2 / 12 * ((n + 1) - tie_term)
    if variance <= 0:
        return u1, 1.0  # every value equal: nothing tells the sides apart
    u = max(u1, n1 * n2 - u1)
    z = (u - mean - 0.5) / math.sqrt(variance)
    return u1, min(1.0, math.erfc(z / math.sqrt(2)))


def _exact_p(u1: float, n1: int, n2: int) -> float:
    """Two-sided exact p-value: twice the chance, under no difference, of a U at least as
    far from its mean as this one (its distribution counted by the usual recurrence)."""
    counts = _u_counts(n1, n2)
    total = sum(counts)
    u = max(u1, n1 * n2 - u1)
    tail = sum(counts[math.ceil(u - 1e-9) :])
    return min(1.0, 2 * tail / total)


_U_COUNTS: Dict[Tuple[int, int], List[int]] = {}


def _u_counts(n1: int, n2: int) -> List[int]:
    """How many arrangements of n1 + n2 values give each U (index) = 0 .. n1 * n2."""
    key = (min(n1, n2), max(n1, n2))
    if key in _U_COUNTS:
        return _U_COUNTS[key]
    a, b = key
    # table[m][k]: count for (m, n) with n growing; built up one n at a time
    table = [[1] + [0] * (a * b) for _ in range(a + 1)]  # n = 0: U = 0 only
    for n in range(1, b + 1):
        new = [[1] + [0] * (a * b)]
        for m in range(1, a + 1):
            row = [0] * (a * b + 1)
            for u in range(m * n + 1):
                # the largest value is from the first sample (adds n to U) or from the second
                row[u] = (new[m - 1][u - n] if u >= n else 0) + table[m][u]
            new.append(row)
        table = new
    _U_COUNTS[key] = table[a]
    return table[a]


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm–Bonferroni adjusted p-values: reject each whose adjusted value is below alpha
    and the chance of any false rejection among them all stays under alpha."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    m = len(p_values)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
