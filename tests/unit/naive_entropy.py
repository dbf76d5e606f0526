"""Naive O(n^2) implementations of the entropy definitions, used as test oracles.

Each function follows its definition literally, with plain Python loops and pairwise
comparisons, so that it is easy to check by reading. core.entropy must agree with them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _templates(sequence: Sequence[int], length: int) -> list[tuple[int, ...]]:
    return [tuple(sequence[i : i + length]) for i in range(len(sequence) - length + 1)]


def _within(first: tuple[int, ...], second: tuple[int, ...], r: float) -> bool:
    return max(abs(a - b) for a, b in zip(first, second, strict=True)) <= r


def _phi_pincus(templates: list[tuple[int, ...]], r: float) -> float:
    n_windows = len(templates)
    total = 0.0
    for template in templates:
        matches = sum(1 for other in templates if _within(template, other, r))
        total += math.log(matches / n_windows)
    return total / n_windows


def naive_apen(sequence: Sequence[int], m: int, r: float) -> float:
    """ApEn(m, r) of Pincus (1991), with self-matches; NaN when len(sequence) < m + 1."""
    if len(sequence) < m + 1:
        return math.nan
    return _phi_pincus(_templates(sequence, m), r) - _phi_pincus(_templates(sequence, m + 1), r)


def naive_apen_reference(sequence: Sequence[int], m: int, r: float) -> float:
    """The Performance Law authors' ApEn: |phi(m+1) - phi(m)|, where a share C of 0 becomes
    1e-10 before ln, phi is (1/K) times the left-to-right sum of ln C, and phi is 0 when a
    sequence has no template of that length (K <= 0).
    """
    n = len(sequence)

    def phi(length: int) -> float:
        n_windows = n - length + 1
        if n_windows <= 0:
            return 0.0
        templates = _templates(sequence, length)
        total = 0.0
        for template in templates:
            share = sum(1 for other in templates if _within(template, other, r)) / n_windows
            total += math.log(share if share != 0 else 1e-10)
        return (1.0 / n_windows) * total

    return abs(phi(m + 1) - phi(m))


def naive_apen_pooled(sequences: Sequence[Sequence[int]], m: int, r: float) -> float:
    """Pooled ApEn: the templates of all sequences form one pool; NaN without m + 1 items."""
    pool_m = [t for sequence in sequences for t in _templates(sequence, m)]
    pool_next = [t for sequence in sequences for t in _templates(sequence, m + 1)]
    if not pool_next:
        return math.nan
    return _phi_pincus(pool_m, r) - _phi_pincus(pool_next, r)


def naive_sample_entropy(sequence: Sequence[int], m: int, r: float) -> float:
    """SampEn(m, r) of Richman and Moorman (2000): -ln(A/B) over the first n - m template
    starts, without self-matches; NaN when A or B is 0.
    """
    n = len(sequence)
    starts = range(n - m)
    pairs_m = 0
    pairs_next = 0
    for i in starts:
        for j in starts:
            if j <= i:
                continue
            if _within(tuple(sequence[i : i + m]), tuple(sequence[j : j + m]), r):
                pairs_m += 1
            if _within(tuple(sequence[i : i + m + 1]), tuple(sequence[j : j + m + 1]), r):
                pairs_next += 1
    if pairs_m == 0 or pairs_next == 0:
        return math.nan
    return -math.log(pairs_next / pairs_m)


def naive_lz_lambdas(sequence: Sequence[int]) -> list[int]:
    """Lambda_i for each position: the length of the shortest substring starting at i that
    starts at no earlier position, or n - i + 1 (0-based i) when the whole rest occurs earlier.
    """
    n = len(sequence)
    lambdas = []
    for i in range(n):
        length = 1
        while True:
            if i + length > n:
                lambdas.append(n - i + 1)
                break
            candidate = list(sequence[i : i + length])
            seen = any(list(sequence[j : j + length]) == candidate for j in range(i))
            if not seen:
                lambdas.append(length)
                break
            length += 1
    return lambdas


def naive_lz_entropy(sequence: Sequence[int]) -> float:
    """Lempel-Ziv estimate n ln n / sum of Lambda_i; NaN for an empty sequence."""
    n = len(sequence)
    if n == 0:
        return math.nan
    return n * math.log(n) / sum(naive_lz_lambdas(sequence))
