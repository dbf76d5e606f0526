"""Data-quality measures of item sequences: Approximate Entropy, Sample Entropy, the
Lempel-Ziv entropy estimate, and dataset-level statistics.

Sequences are passed in CSR form, as core.dataset.SequenceDataset stores them: one int64 id
array `items` with every sequence back to back, and `offsets` of shape (n_sequences + 1,) so
that sequence s is items[offsets[s]:offsets[s + 1]]. Every per-sequence measure is computed
for all sequences at once with NumPy array operations. Entropies are in nats.

Exact matching (r < 1) never compares template pairs. A suffix array of all sequences is
built by prefix doubling (each round sorts only the suffixes that still tie), with the
longest common prefix (LCP) of neighbouring suffixes. Equal templates of length t are then
runs of neighbours whose LCP is at least t, which gives ApEn and Sample Entropy, and
previous-smaller-position searches over the same array give the Lempel-Ziv match lengths.
The cost is O(N log L) for N items and longest sequence L. Sequences are processed in
chunks of at most _CHUNK_ITEMS items (a longer sequence forms a chunk of its own), so memory
is O(C log L) for a chunk of C items plus O(N) for the inputs and results.

Tolerance matching (r >= 1, ids within r count as equal) compares every pair of templates
of a sequence, so it costs O(n^2) per sequence of length n. Its loop runs over the distance
between the two templates and handles all sequences in each step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from scipy.spatial import cKDTree

from core.dataset import SequenceDataset

VARIANTS = ("pincus", "reference", "pooled")

# The reference variant replaces a template share C equal to 0 by this value before ln.
REFERENCE_ZERO_SHARE = 1e-10

# Sequences are processed in chunks of at most this many items, which bounds the memory of
# the suffix-array rounds and the per-position arrays. Small chunks also keep the arrays of
# the random-access passes in CPU cache: 2**19 items (4 MiB per int64 array) was the fastest
# of 2**16 .. 2**21 on bench/bench_profile.py's synthetic log, on an AMD EPYC with 32 MiB L3.
_CHUNK_ITEMS = 1 << 19

# Packed sort keys multiply two values below the number of positions, so that number must
# stay below 2**31 to fit in int64.
_MAX_POSITIONS = (1 << 31) - 1

# Tolerance matching subtracts ids in int64 and the pooled variant compares them as float64;
# both are exact for ids of magnitude below 2**52.
_MAX_TOLERANCE_ID = 1 << 52


@dataclass(frozen=True)
class EntropySummary:
    """Distribution of a per-sequence measure over the sequences of a dataset.

    Attributes:
        mean: mean over the sequences where the measure is defined; NaN when there are none.
            For the pooled ApEn variant, the single dataset value.
        std: population standard deviation (ddof=0) of those values; NaN for pooled ApEn.
        p10, p50, p90: percentiles with linear interpolation; NaN for pooled ApEn.
        n_used: sequences that entered the mean.
        n_left_out: sequences where the measure is undefined.
    """

    mean: float
    std: float
    p10: float
    p50: float
    p90: float
    n_used: int
    n_left_out: int

    def to_dict(self) -> dict[str, float | int | None]:
        """Return plain JSON-ready values, with NaN as None."""
        return {
            "mean": _json_float(self.mean),
            "std": _json_float(self.std),
            "p10": _json_float(self.p10),
            "p50": _json_float(self.p50),
            "p90": _json_float(self.p90),
            "n_used": self.n_used,
            "n_left_out": self.n_left_out,
        }


@dataclass(frozen=True)
class EntropyMeasures:
    """ApEn, Sample Entropy and the Lempel-Ziv estimate of one set of sequences."""

    apen: EntropySummary
    sample_entropy: EntropySummary
    lz_entropy: EntropySummary


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


# --------------------------------------------------------------------------------------
# Arguments


def validate_entropy_params(m: int, r: float, variant: str) -> None:
    """Raise ValueError for invalid ApEn parameters.

    Raises:
        ValueError: naming the argument when m is not an integer >= 1, r is not a finite
            number, variant is unknown, or r < 0 with a variant other than "reference".
    """
    _validate_template(m, r)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if r < 0 and variant != "reference":
        raise ValueError(
            f"r must be >= 0 for variant {variant!r}, got {r!r}; "
            "only the 'reference' variant accepts a negative r"
        )


def validate_max_len(max_len: int | None) -> None:
    """Raise ValueError unless max_len is None or an integer >= 1."""
    if max_len is not None and (
        isinstance(max_len, bool) or not isinstance(max_len, Integral) or max_len < 1
    ):
        raise ValueError(f"max_len must be None or an integer >= 1, got {max_len!r}")


def _validate_template(m: int, r: float) -> None:
    if isinstance(m, bool) or not isinstance(m, Integral) or m < 1:
        raise ValueError(f"m must be an integer >= 1, got {m!r}")
    if isinstance(r, bool) or not isinstance(r, Real) or not math.isfinite(r):
        raise ValueError(f"r must be a finite number, got {r!r}")


def _check_sequences(items: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    items = np.asarray(items)
    offsets = np.asarray(offsets)
    if items.ndim != 1 or not np.issubdtype(items.dtype, np.integer):
        raise ValueError(
            f"items must be a 1-D integer array, got dtype {items.dtype} and shape {items.shape}"
        )
    if offsets.ndim != 1 or len(offsets) == 0 or not np.issubdtype(offsets.dtype, np.integer):
        raise ValueError(
            f"offsets must be a non-empty 1-D integer array, got dtype {offsets.dtype} "
            f"and shape {offsets.shape}"
        )
    if offsets[0] != 0 or offsets[-1] != len(items) or np.any(np.diff(offsets) < 0):
        raise ValueError(
            "offsets must start at 0, never decrease and end at len(items) "
            f"= {len(items)}; got first {offsets[0]} and last {offsets[-1]}"
        )
    if len(items) > _MAX_POSITIONS:
        raise ValueError(f"at most {_MAX_POSITIONS} items are supported, got {len(items)}")
    return items.astype(np.int64, copy=False), offsets.astype(np.int64, copy=False)


def _check_tolerance_ids(values: np.ndarray) -> None:
    if len(values) and int(np.max(np.abs(values))) >= _MAX_TOLERANCE_ID:
        raise ValueError(
            f"item ids must be below 2**52 in magnitude for r >= 1, got {int(np.max(np.abs(values)))}"
        )


def truncate_sequences(
    items: np.ndarray, offsets: np.ndarray, max_len: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the last max_len items of every sequence (all of them when max_len is None).

    Returns:
        (items, offsets) of the cut sequences, in the same CSR form.
    """
    validate_max_len(max_len)
    items, offsets = _check_sequences(items, offsets)
    if max_len is None:
        return items, offsets
    lengths = np.diff(offsets)
    if len(lengths) == 0 or lengths.max() <= max_len:
        return items, offsets
    kept_lengths = np.minimum(lengths, max_len)
    first_kept = np.repeat(offsets[1:] - kept_lengths, lengths)
    new_offsets = np.zeros_like(offsets)
    np.cumsum(kept_lengths, out=new_offsets[1:])
    return items[np.arange(len(items)) >= first_kept], new_offsets


# --------------------------------------------------------------------------------------
# Positions and chunks


@dataclass(frozen=True)
class _Layout:
    """Per-position bookkeeping of CSR sequences."""

    lengths: np.ndarray  # (n_sequences,)
    sequence: np.ndarray  # (n_items,) sequence index of each position
    end: np.ndarray  # (n_items,) one past the last position of the position's sequence

    @property
    def remaining(self) -> np.ndarray:
        """Items from each position to the end of its sequence, the position included."""
        return self.end - np.arange(len(self.end))

    @classmethod
    def from_offsets(cls, offsets: np.ndarray) -> _Layout:
        lengths = np.diff(offsets)
        return cls(
            lengths=lengths,
            sequence=np.repeat(np.arange(len(lengths)), lengths),
            end=np.repeat(offsets[1:], lengths),
        )


def _chunks(offsets: np.ndarray) -> Iterator[tuple[int, int]]:
    """Yield [first, stop) ranges of sequences holding at most _CHUNK_ITEMS items each."""
    n_sequences = len(offsets) - 1
    first = 0
    while first < n_sequences:
        bound = offsets[first] + _CHUNK_ITEMS
        stop = int(np.searchsorted(offsets, bound, side="right")) - 1
        stop = min(max(stop, first + 1), n_sequences)
        yield first, stop
        first = stop


def _map_chunks(
    items: np.ndarray,
    offsets: np.ndarray,
    measure: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, ...]],
    n_outputs: int,
) -> tuple[np.ndarray, ...]:
    """Apply a per-sequence measure chunk by chunk and join its per-sequence outputs."""
    parts: list[tuple[np.ndarray, ...]] = []
    for first, stop in _chunks(offsets):
        chunk_items = items[offsets[first] : offsets[stop]]
        parts.append(measure(chunk_items, offsets[first : stop + 1] - offsets[first]))
    if not parts:
        return tuple(np.empty(0) for _ in range(n_outputs))
    return tuple(np.concatenate([part[k] for part in parts]) for k in range(n_outputs))


def _symbol_codes(items: np.ndarray) -> np.ndarray:
    """Return non-negative codes below 2**31 with the same equalities as items."""
    if len(items) == 0 or (items.min() >= 0 and items.max() < _MAX_POSITIONS):
        return items
    return np.unique(items, return_inverse=True)[1].astype(np.int64)


# --------------------------------------------------------------------------------------
# Suffix array by prefix doubling


@dataclass(frozen=True)
class _SuffixArray:
    """Suffixes of the sequences in lexicographic order.

    Attributes:
        order: positions sorted by (group, suffix); a suffix stops at its sequence's end and
            sorts before every longer suffix that it is a prefix of.
        lcp: lcp[t] is the common prefix length of the suffixes at order[t - 1] and order[t],
            capped at 2**len(ranks) - 1; lcp[0] = 0. The cap only applies when suffixes
            still tie after the last level, which happens only with max_depth.
        ranks: ranks[k][p] is the rank of the first 2**k items of the suffix at p: the index
            in `order` where the run of suffixes sharing that prefix starts. Two positions
            have equal ranks exactly when those prefixes are equal and in the same group.
    """

    order: np.ndarray
    lcp: np.ndarray
    ranks: list[np.ndarray]


def _run_starts(sorted_values: np.ndarray) -> np.ndarray:
    starts = np.ones(len(sorted_values), dtype=bool)
    starts[1:] = sorted_values[1:] != sorted_values[:-1]
    return starts


def _run_heads(starts: np.ndarray) -> np.ndarray:
    """Index of the first element of each element's run."""
    return np.maximum.accumulate(np.where(starts, np.arange(len(starts)), 0))


def _in_shared_run(starts: np.ndarray) -> np.ndarray:
    """Mark the elements whose run has at least two elements."""
    run_id = np.cumsum(starts) - 1
    return np.bincount(run_id)[run_id] >= 2


def _build_suffix_array(
    codes: np.ndarray, group: np.ndarray, end: np.ndarray, max_depth: int | None = None
) -> _SuffixArray:
    """Sort all suffixes by (group, suffix) with prefix doubling.

    Args:
        codes: (n,) non-negative int64 symbol codes below 2**31.
        group: (n,) non-negative int64; suffixes of different groups never compare equal.
        end: (n,) one past the last position of each position's sequence.
        max_depth: stop once suffixes are sorted by their first max_depth items.
    """
    n = len(codes)
    n_codes = int(codes.max()) + 1 if n else 1
    key = group * n_codes + codes
    order = np.argsort(key)
    starts = _run_starts(key[order])
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = _run_heads(starts)
    levels = [ranks]
    tied = order[_in_shared_run(starts)]

    depth = 1
    while len(tied) and (max_depth is None or depth < max_depth):
        ranks, tied = _double_prefix(ranks, tied, depth, end)
        levels.append(ranks)
        depth *= 2

    if len(tied):
        order = np.argsort(ranks, kind="stable")
    else:
        order = np.empty(n, dtype=np.int64)
        order[ranks] = np.arange(n)
    return _SuffixArray(order=order, lcp=_neighbour_lcp(order, levels, end), ranks=levels)


def _double_prefix(
    ranks: np.ndarray, tied: np.ndarray, depth: int, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Refine ranks of prefixes of `depth` items to ranks of prefixes of 2 * depth items.

    Only the positions in `tied`, which share their rank with another position, are
    re-sorted by (rank of the first half, rank of the second half). A second half that
    starts past the sequence end sorts first. Returns the new ranks and the positions that
    still tie.
    """
    n = len(ranks)
    second_start = tied + depth
    has_second = second_start < end[tied]
    second = np.where(has_second, ranks[np.minimum(second_start, n - 1)] + 1, 0)
    key = ranks[tied] * (n + 1) + second
    order = np.argsort(key)
    positions = tied[order]
    sorted_key = key[order]
    old_rank = ranks[positions]

    # A new rank is the old run's start plus the offset of the new sub-run inside it.
    new_starts = _run_starts(sorted_key)
    offset_in_old_run = _run_heads(new_starts) - _run_heads(_run_starts(old_rank))
    new_ranks = ranks.copy()
    new_ranks[positions] = old_rank + offset_in_old_run
    return new_ranks, positions[_in_shared_run(new_starts)]


def _neighbour_lcp(order: np.ndarray, levels: list[np.ndarray], end: np.ndarray) -> np.ndarray:
    """LCP of each suffix with the one before it in `order`, by binary lifting over levels."""
    n = len(order)
    lcp = np.zeros(n, dtype=np.int64)
    if n < 2:
        return lcp
    first_rank = levels[0]
    candidates = np.flatnonzero(first_rank[order[:-1]] == first_rank[order[1:]])
    left = order[candidates]
    right = order[candidates + 1]
    left_end = end[left]
    right_end = end[right]
    common = np.zeros(len(candidates), dtype=np.int64)
    for level in range(len(levels) - 1, -1, -1):
        step = 1 << level
        left_at = left + common
        right_at = right + common
        # Equal ranks of two cut-off prefixes mean equal short strings, so both blocks must
        # also be complete before the step counts as matched.
        complete = (left_at + step <= left_end) & (right_at + step <= right_end)
        ranks = levels[level]
        same = ranks[np.minimum(left_at, n - 1)] == ranks[np.minimum(right_at, n - 1)]
        common += np.where(complete & same, step, 0)
    lcp[candidates + 1] = common
    return lcp


def _window_counts(suffixes: _SuffixArray, length: int) -> np.ndarray:
    """Count, for each position, the windows of `length` items equal to its own, itself included.

    Only meaningful where a full window starts; windows are compared within a group only.
    """
    starts = suffixes.lcp < length
    run_id = np.cumsum(starts) - 1
    counts = np.empty(len(starts), dtype=np.int64)
    counts[suffixes.order] = np.bincount(run_id)[run_id]
    return counts


def _matching_pairs(
    suffixes: _SuffixArray,
    length: int,
    eligible: np.ndarray,
    sequence: np.ndarray,
    n_sequences: int,
) -> np.ndarray:
    """Count unordered pairs of eligible windows with equal first `length` items, per sequence."""
    starts = suffixes.lcp < length
    run_id = np.cumsum(starts) - 1
    members = np.bincount(run_id, weights=eligible[suffixes.order])
    pairs = members * (members - 1) / 2
    run_sequence = sequence[suffixes.order[starts]]
    return np.bincount(run_sequence, weights=pairs, minlength=n_sequences)


def _sparse_min_table(values: np.ndarray, n_levels: int) -> np.ndarray:
    """Return table[k, i] = min(values[i : i + 2**k]), cut at the end of the array."""
    table = np.empty((n_levels, len(values)), dtype=values.dtype)
    table[0] = values
    for level in range(1, n_levels):
        step = 1 << (level - 1)
        table[level] = table[level - 1]
        if step < len(values):
            np.minimum(table[level - 1, :-step], table[level - 1, step:], out=table[level, :-step])
    return table


def _range_min(table: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Minimum of the table's base values over [first, last] (inclusive), first <= last."""
    level = np.floor(np.log2(last - first + 1)).astype(np.int64)
    return np.minimum(table[level, first], table[level, last - (1 << level) + 1])


def _longest_earlier_matches(suffixes: _SuffixArray) -> np.ndarray:
    """For each position p, the length of the longest prefix of its suffix that also starts
    at an earlier position of the same sequence (0 when its first item has not occurred).

    The earlier position with the longest match is one of two suffixes: the nearest one
    before p in suffix order whose position is smaller than p, or the nearest such one after
    p. The match length is the minimum LCP between the two suffixes. The search stays inside
    the run of suffixes that start with p's item, and finds both by binary lifting over a
    sparse minimum table.
    """
    order = suffixes.order
    matches = np.zeros(len(order), dtype=np.int64)
    run_first = suffixes.ranks[0][order]
    run_size = np.bincount(run_first, minlength=len(order))[run_first]

    # Only suffixes whose first item occurs again can have an earlier match. Keeping just
    # their runs (each stays contiguous) makes the tables below smaller.
    shared = run_size >= 2
    if not shared.any():
        return matches
    order = order[shared]
    lcp = suffixes.lcp[shared]
    run_size = run_size[shared]
    n = len(order)
    run_first = _run_heads(_run_starts(run_first[shared]))
    run_stop = run_first + run_size

    n_levels = int(run_size.max()).bit_length()
    position_min = _sparse_min_table(order, n_levels)
    lcp_min = _sparse_min_table(lcp, n_levels)

    queries = np.arange(n)
    before = queries.copy()
    after = queries + 1
    for level in range(n_levels - 1, -1, -1):
        step = 1 << level
        candidate = before - step
        move = (candidate >= run_first) & (position_min[level, np.maximum(candidate, 0)] > order)
        before = np.where(move, candidate, before)
        move = (after + step <= run_stop) & (position_min[level, np.minimum(after, n - 1)] > order)
        after = np.where(move, after + step, after)

    # `before` and `after` now bound the run of larger positions around each query.
    best = np.zeros(n, dtype=np.int64)
    has_before = before > run_first
    best[has_before] = _range_min(lcp_min, before[has_before], queries[has_before])
    has_after = after < run_stop
    best[has_after] = np.maximum(
        best[has_after], _range_min(lcp_min, queries[has_after] + 1, after[has_after])
    )
    matches[order] = best
    return matches


# --------------------------------------------------------------------------------------
# Per-sequence measures from template counts


def _phi(
    counts: np.ndarray, window: np.ndarray, layout: _Layout, n_windows: np.ndarray
) -> np.ndarray:
    """phi = (1/K) * sum over windows i of ln(C_i), C_i = count_i / K, per sequence.

    NaN where a sequence has no window (K = 0).
    """
    sequence = layout.sequence[window]
    shares = counts[window] / n_windows[sequence]
    total = np.bincount(sequence, weights=np.log(shares), minlength=len(n_windows))
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / n_windows


def _apen_from_counts(
    counts_m: np.ndarray, counts_next: np.ndarray, layout: _Layout, m: int, variant: str
) -> np.ndarray:
    remaining = layout.remaining
    phi_m = _phi(counts_m, remaining >= m, layout, np.maximum(layout.lengths - m + 1, 0))
    phi_next = _phi(counts_next, remaining >= m + 1, layout, np.maximum(layout.lengths - m, 0))
    if variant == "reference":
        return np.where(layout.lengths >= m + 1, np.abs(phi_next - phi_m), 0.0)
    return phi_m - phi_next


def _sample_entropy_from_pairs(pairs_m: np.ndarray, pairs_next: np.ndarray) -> np.ndarray:
    defined = (pairs_m > 0) & (pairs_next > 0)
    values = np.full(len(pairs_m), np.nan)
    values[defined] = -np.log(pairs_next[defined] / pairs_m[defined])
    return values


def _lz_from_matches(matches: np.ndarray, layout: _Layout) -> np.ndarray:
    """n ln n / sum of Lambda_i per sequence, with Lambda_i = 1 + longest earlier match."""
    lengths = layout.lengths
    match_total = np.bincount(layout.sequence, weights=matches, minlength=len(lengths))
    values = np.full(len(lengths), np.nan)
    used = lengths > 0
    n = lengths[used].astype(np.float64)
    values[used] = n * np.log(n) / (n + match_total[used])
    return values


# --------------------------------------------------------------------------------------
# Chunk kernels


def _exact_chunk(
    items: np.ndarray, offsets: np.ndarray, m: int, variant: str, with_lz: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ApEn, Sample Entropy and (when with_lz) the LZ estimate with exact matching."""
    layout = _Layout.from_offsets(offsets)
    suffixes = _build_suffix_array(
        _symbol_codes(items), layout.sequence, layout.end, None if with_lz else m + 1
    )
    apen = _apen_from_counts(
        _window_counts(suffixes, m), _window_counts(suffixes, m + 1), layout, m, variant
    )
    eligible = layout.remaining >= m + 1
    n_sequences = len(layout.lengths)
    pairs_m = _matching_pairs(suffixes, m, eligible, layout.sequence, n_sequences)
    pairs_next = _matching_pairs(suffixes, m + 1, eligible, layout.sequence, n_sequences)
    sample_entropy = _sample_entropy_from_pairs(pairs_m, pairs_next)
    if with_lz:
        lz = _lz_from_matches(_longest_earlier_matches(suffixes), layout)
    else:
        lz = np.full(n_sequences, np.nan)
    return apen, sample_entropy, lz


def _tolerance_chunk(
    values: np.ndarray, offsets: np.ndarray, m: int, r: float, variant: str
) -> tuple[np.ndarray, np.ndarray]:
    """ApEn and Sample Entropy where ids within r count as equal, by comparing all pairs.

    For each distance d between template starts, all positions i whose template pair
    (i, i + d) fits in their sequence are compared at once. The loop runs
    (longest sequence - m) times, and the total work is O(sum of n^2).
    """
    layout = _Layout.from_offsets(offsets)
    n = len(values)
    tolerance = math.floor(r)
    remaining = layout.remaining
    counts_m = (remaining >= m).astype(np.int64)  # every template matches itself
    counts_next = (remaining >= m + 1).astype(np.int64)
    pair_m = np.zeros(n)
    pair_next = np.zeros(n)

    by_remaining = np.argsort(-remaining, kind="stable")
    sorted_remaining = remaining[by_remaining]
    longest = int(sorted_remaining[0]) if n else 0
    for distance in range(1, longest - m + 1):
        # Positions whose m-template at i + distance still fits in the sequence.
        n_pairs = int(np.searchsorted(-sorted_remaining, -(distance + m), side="right"))
        first = by_remaining[:n_pairs]
        second = first + distance
        match = np.ones(n_pairs, dtype=bool)
        for k in range(m):
            match &= np.abs(values[first + k] - values[second + k]) <= tolerance
        counts_m[first] += match
        counts_m[second] += match

        # Both templates extend to m + 1 items; these pairs also feed Sample Entropy.
        both_extend = match & (remaining[first] >= distance + m + 1)
        next_match = both_extend & (
            np.abs(values[first + m] - values[np.minimum(second + m, n - 1)]) <= tolerance
        )
        counts_next[first] += next_match
        counts_next[second] += next_match
        pair_m[first] += both_extend
        pair_next[first] += next_match

    apen = _apen_from_counts(counts_m, counts_next, layout, m, variant)
    n_sequences = len(layout.lengths)
    sample_entropy = _sample_entropy_from_pairs(
        np.bincount(layout.sequence, weights=pair_m, minlength=n_sequences),
        np.bincount(layout.sequence, weights=pair_next, minlength=n_sequences),
    )
    return apen, sample_entropy


def _reference_negative_r(lengths: np.ndarray, m: int) -> np.ndarray:
    """ApEn of the reference variant for r < 0, where no template matches any other.

    Every share C is 0 and becomes 1e-10, so phi(t) = (1/K) * (sum of K copies of
    ln 1e-10) with K = n - t + 1 windows, and 0 when K <= 0. The sum is accumulated left to
    right, in the order the reference code adds its terms, so rounding agrees too.
    """
    n_windows_m = lengths - m + 1
    max_windows = int(n_windows_m.max()) if len(lengths) else 0
    partial_sums = np.cumsum(np.full(max(max_windows, 1), math.log(REFERENCE_ZERO_SHARE)))

    def phi(n_windows: np.ndarray) -> np.ndarray:
        values = np.zeros(len(n_windows))
        has = n_windows > 0
        values[has] = (1.0 / n_windows[has]) * partial_sums[n_windows[has] - 1]
        return values

    return np.abs(phi(lengths - m) - phi(n_windows_m))


# --------------------------------------------------------------------------------------
# Public measures


def compute_apen(
    items: np.ndarray, offsets: np.ndarray, m: int = 2, r: float = 0.0, variant: str = "pincus"
) -> np.ndarray:
    """Compute Approximate Entropy (Pincus 1991) for every sequence.

    With K = n - m + 1 templates u_i of m items, C_i = #{j : max_k |u_i[k] - u_j[k]| <= r} / K
    (j = i counted), phi^m = (1/K) * sum_i ln C_i, and ApEn = phi^m - phi^(m+1).
    For r < 1 on integer ids this is exact matching, phi^m = sum over distinct templates g
    of (c_g/K) ln(c_g/K). For r >= 1 the ids are compared as numbers: pass the ids as
    uploaded, because the result depends on how ids are numbered.

    Args:
        items: (n_items,) integer ids, sequences back to back.
        offsets: (n_sequences + 1,) CSR offsets into items.
        m: template length, >= 1.
        r: tolerance; r < 0 only for variant "reference".
        variant: "pincus" (NaN for sequences with n < m + 1) or "reference" (the value
            the Performance Law authors' public code computes: |phi^(m+1) - phi^m|, a share
            C of 0 replaced by 1e-10 before ln, and 0 for sequences with n <= m, except
            ln(1e10) for n == m when r < 0). "pooled" has one value per dataset: use
            compute_pooled_apen.

    Returns:
        float64 array of shape (n_sequences,), in nats.
    """
    validate_entropy_params(m, r, variant)
    if variant == "pooled":
        raise ValueError("variant 'pooled' gives one value per dataset; use compute_pooled_apen")
    items, offsets = _check_sequences(items, offsets)
    if variant == "reference" and r < 0:
        return _reference_negative_r(np.diff(offsets), m)
    if r < 1:
        return _map_chunks(
            items, offsets, lambda x, o: _exact_chunk(x, o, m, variant, with_lz=False)[:1], 1
        )[0]
    _check_tolerance_ids(items)
    return _map_chunks(items, offsets, lambda x, o: _tolerance_chunk(x, o, m, r, variant)[:1], 1)[0]


def compute_pooled_apen(
    items: np.ndarray, offsets: np.ndarray, m: int = 2, r: float = 0.0
) -> float:
    """Compute one ApEn for all sequences together (the "pooled" variant).

    The templates of every sequence form one pool: K_t is the number of windows of t items
    over all sequences (no window crosses a sequence boundary), C_i counts the windows of
    the pool within r of window i, phi^t = (1/K_t) * sum_i ln C_i, and the result is
    phi^m - phi^(m+1). A sequence of length n contributes max(n - t + 1, 0) windows of t
    items. For r >= 1 the pool is searched with a k-d tree (Chebyshev distance), whose cost
    grows with the number of matching pairs.

    Returns:
        The pooled ApEn in nats; NaN when no sequence has m + 1 items.
    """
    validate_entropy_params(m, r, "pooled")
    items, offsets = _check_sequences(items, offsets)
    if not np.any(np.diff(offsets) >= m + 1):
        return math.nan
    if r >= 1:
        _check_tolerance_ids(items)
        remaining = _Layout.from_offsets(offsets).remaining
        phi = []
        for length in (m, m + 1):
            window = remaining >= length
            shares = _pooled_tolerance_counts(items, remaining, length, r)[window] / np.count_nonzero(window)
            phi.append(float(np.mean(np.log(shares))))
        return phi[0] - phi[1]

    codes = _symbol_codes(items)
    group_sizes = _packed_group_sizes(codes, offsets, m)
    if group_sizes is None:
        # NOTE: this path allocates about ten int64 arrays of the dataset's size at once, the
        # packed path about three. It is taken only when m + 1 ids need more than 63 bits
        # together, e.g. m = 3 with ids of 2**15 or more, or m = 2 with ids of 2**21 or more.
        group_sizes = _suffix_group_sizes(codes, _Layout.from_offsets(offsets).end, m)
    sizes_m, sizes_next = group_sizes
    return _phi_from_group_sizes(sizes_m) - _phi_from_group_sizes(sizes_next)


def _phi_from_group_sizes(sizes: np.ndarray) -> float:
    """phi = sum over groups of (c/K) ln(c/K), K = sum of c: the exact-matching form."""
    n_windows = sizes.sum()
    return float(np.sum(sizes * np.log(sizes / n_windows))) / n_windows


def _packed_group_sizes(
    codes: np.ndarray, offsets: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Sizes of the groups of equal windows of m and of m + 1 items over all sequences.

    Each window is packed into one int64 with one field per item (code + 1, or 0 past the
    sequence end), so a single sort groups them. Returns None when m + 1 fields do not fit
    in 63 bits.
    """
    bits = (int(codes.max()) + 1).bit_length()
    if (m + 1) * bits > 63:
        return None
    parts = [np.empty(0, dtype=np.int64)]
    for first, stop in _chunks(offsets):
        chunk_codes = codes[offsets[first] : offsets[stop]]
        chunk_offsets = offsets[first : stop + 1] - offsets[first]
        parts.append(_packed_windows(chunk_codes, chunk_offsets, m, bits))
    key = np.concatenate(parts)
    key.sort()
    prefix = key >> bits
    extended = key[(key & ((1 << bits) - 1)) != 0]
    return _run_sizes(prefix), _run_sizes(extended)


def _packed_windows(codes: np.ndarray, offsets: np.ndarray, m: int, bits: int) -> np.ndarray:
    """Pack every window of m items, with the item after it or 0, into one int64 key."""
    remaining = _Layout.from_offsets(offsets).remaining
    starts = np.flatnonzero(remaining >= m)
    start_remaining = remaining[starts]
    key = np.zeros(len(starts), dtype=np.int64)
    for k in range(m + 1):
        field = np.where(start_remaining > k, codes[np.minimum(starts + k, len(codes) - 1)] + 1, 0)
        key = (key << bits) | field
    return key


def _suffix_group_sizes(codes: np.ndarray, end: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Same as _packed_group_sizes, from a suffix array of all sequences in one group."""
    suffixes = _build_suffix_array(codes, np.zeros(len(codes), dtype=np.int64), end, m + 1)
    sorted_remaining = end[suffixes.order] - suffixes.order
    sizes = []
    for length in (m, m + 1):
        # Runs with LCP >= length hold windows only; other positions are runs of one.
        starts = suffixes.lcp < length
        run_sizes = np.bincount(np.cumsum(starts) - 1)
        sizes.append(run_sizes[sorted_remaining[starts] >= length])
    return sizes[0], sizes[1]


def _run_sizes(sorted_values: np.ndarray) -> np.ndarray:
    starts = np.flatnonzero(_run_starts(sorted_values))
    return np.diff(np.append(starts, len(sorted_values)))


def _pooled_tolerance_counts(
    values: np.ndarray, remaining: np.ndarray, length: int, r: float
) -> np.ndarray:
    """Windows of the pool within Chebyshev distance r of each window, itself included."""
    counts = np.zeros(len(values), dtype=np.int64)
    window_starts = np.flatnonzero(remaining >= length)
    if len(window_starts) == 0:
        return counts
    windows = values[window_starts[:, None] + np.arange(length)].astype(np.float64)
    tree = cKDTree(windows)
    counts[window_starts] = tree.query_ball_point(windows, r, p=np.inf, return_length=True)
    return counts


def compute_sample_entropy(
    items: np.ndarray, offsets: np.ndarray, m: int = 2, r: float = 0.0
) -> np.ndarray:
    """Compute Sample Entropy (Richman and Moorman 2000) for every sequence.

    Both template lengths use the same N - m start positions (N = sequence length). B is
    the number of pairs i < j of m-item templates within r of each other (Chebyshev
    distance, no self-matches), A the same for m + 1 items, and SampEn = -ln(A / B).
    Exact matching for r < 1; for r >= 1 pass the ids as uploaded, as for compute_apen.

    Returns:
        float64 array of shape (n_sequences,), in nats. NaN where A = 0 or B = 0, where the
        ratio is 0 or undefined; that includes every sequence with fewer than m + 2 items
        and, for r < 0, every sequence.
    """
    _validate_template(m, r)
    items, offsets = _check_sequences(items, offsets)
    n_sequences = len(offsets) - 1
    if r < 0:
        return np.full(n_sequences, np.nan)
    if r < 1:
        return _map_chunks(
            items, offsets, lambda x, o: _exact_chunk(x, o, m, "pincus", with_lz=False)[1:2], 1
        )[0]
    _check_tolerance_ids(items)
    return _map_chunks(items, offsets, lambda x, o: _tolerance_chunk(x, o, m, r, "pincus")[1:], 1)[0]


def compute_lz_entropy(items: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Compute the Lempel-Ziv entropy estimate of every sequence.

    This is the increasing-window estimator of Kontoyiannis et al. (1998):
    H = n ln n / sum_{i=1..n} Lambda_i, where Lambda_i is the length of the shortest
    substring starting at position i that does not start at any earlier position j < i
    of the same sequence. The earlier occurrence may overlap position i (it only has to
    start before i). When even the whole rest x_i..x_n occurs earlier, no such substring
    exists inside the sequence and Lambda_i = n - i + 2, the rest plus one item, as if a
    new item followed. Items are compared for equality only.

    Returns:
        float64 array of shape (n_sequences,), in nats per item; 0 for a sequence of one
        item (ln 1 = 0) and NaN for an empty sequence.
    """
    items, offsets = _check_sequences(items, offsets)
    return _map_chunks(items, offsets, lambda x, o: (_lz_chunk(x, o),), 1)[0]


def _lz_chunk(items: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    layout = _Layout.from_offsets(offsets)
    suffixes = _build_suffix_array(_symbol_codes(items), layout.sequence, layout.end)
    return _lz_from_matches(_longest_earlier_matches(suffixes), layout)


def summarize_values(values: np.ndarray) -> EntropySummary:
    """Summarize per-sequence values; NaN entries are the sequences left out."""
    values = np.asarray(values, dtype=np.float64)
    used = values[~np.isnan(values)]
    n_left_out = len(values) - len(used)
    if len(used) == 0:
        return EntropySummary(math.nan, math.nan, math.nan, math.nan, math.nan, 0, n_left_out)
    p10, p50, p90 = np.percentile(used, [10, 50, 90])
    return EntropySummary(
        mean=float(np.mean(used)),
        std=float(np.std(used)),
        p10=float(p10),
        p50=float(p50),
        p90=float(p90),
        n_used=len(used),
        n_left_out=n_left_out,
    )


def _pooled_summary(items: np.ndarray, offsets: np.ndarray, m: int, r: float) -> EntropySummary:
    lengths = np.diff(offsets)
    n_used = int(np.count_nonzero(lengths >= m))
    value = compute_pooled_apen(items, offsets, m, r)
    return EntropySummary(
        mean=value,
        std=math.nan,
        p10=math.nan,
        p50=math.nan,
        p90=math.nan,
        n_used=n_used,
        n_left_out=len(lengths) - n_used,
    )


def measure_entropies(
    items: np.ndarray, offsets: np.ndarray, m: int = 2, r: float = 0.0, variant: str = "pincus"
) -> EntropyMeasures:
    """Summarize ApEn, Sample Entropy and the LZ estimate, sharing one suffix array.

    Args:
        items, offsets: the sequences, already cut to the length that should be measured.
            For r >= 1 the ids must be the ids as uploaded.
        m, r, variant: as in compute_apen; Sample Entropy uses the same m and r.

    Returns:
        The three summaries. For "pincus", ApEn leaves out sequences with fewer than m + 1
        items, and "reference" uses every sequence. "pooled" reports the pooled value as the
        mean and counts the sequences with at least m items as n_used.
    """
    validate_entropy_params(m, r, variant)
    items, offsets = _check_sequences(items, offsets)
    per_sequence_variant = "pincus" if variant == "pooled" else variant
    if 0 <= r < 1:
        apen, sample_entropy, lz = _map_chunks(
            items, offsets, lambda x, o: _exact_chunk(x, o, m, per_sequence_variant, True), 3
        )
    else:
        lz = compute_lz_entropy(items, offsets)
        if r < 0:
            apen = _reference_negative_r(np.diff(offsets), m)
            sample_entropy = np.full(len(offsets) - 1, np.nan)
        else:
            _check_tolerance_ids(items)
            apen, sample_entropy = _map_chunks(
                items, offsets, lambda x, o: _tolerance_chunk(x, o, m, r, per_sequence_variant), 2
            )
    if variant == "pooled":
        apen_summary = _pooled_summary(items, offsets, m, r)
    else:
        apen_summary = summarize_values(apen)
    return EntropyMeasures(
        apen=apen_summary,
        sample_entropy=summarize_values(sample_entropy),
        lz_entropy=summarize_values(lz),
    )


def select_comparison_ids(dataset: SequenceDataset, r: float) -> np.ndarray:
    """Return the ids that entropy measures compare for tolerance r.

    Exact matching (r < 1) gives the same result on any one-to-one numbering, so it uses the
    re-indexed ids. Tolerance matching (r >= 1) treats ids as numbers and uses the ids as
    uploaded; it raises ValueError when they are not all integers.
    """
    if r < 1:
        return dataset.items
    return dataset.original_numeric_items()


def measure_dataset_apen(
    dataset: SequenceDataset,
    m: int = 2,
    r: float = 0.0,
    max_len: int | None = 50,
    variant: str = "pincus",
) -> EntropySummary:
    """Compute the dataset ApEn: each sequence cut to its last max_len items, per-sequence
    ApEn averaged (or the pooled value for variant "pooled").

    Raises:
        ValueError: for invalid parameters, or r >= 1 on a dataset whose ids are not integers.
    """
    validate_entropy_params(m, r, variant)
    validate_max_len(max_len)
    items, offsets = truncate_sequences(select_comparison_ids(dataset, r), dataset.offsets, max_len)
    if variant == "pooled":
        return _pooled_summary(items, offsets, m, r)
    return summarize_values(compute_apen(items, offsets, m, r, variant))


# --------------------------------------------------------------------------------------
# Dataset-level statistics


def compute_popularity_entropy(items: np.ndarray, n_items: int) -> tuple[float, float]:
    """Compute the Shannon entropy of item popularity.

    H = -sum_k p_k ln p_k with p_k = (interactions with item k) / (all interactions).

    Returns:
        (H in nats, H / ln(n_items)), where n_items is the catalogue size; either is NaN
        when there are no interactions, the second also when n_items < 2.
    """
    items = np.asarray(items)
    if len(items) == 0:
        return math.nan, math.nan
    counts = _value_counts(items)
    shares = counts / len(items)
    entropy = float(-np.sum(shares * np.log(shares)))
    normalized = entropy / math.log(n_items) if n_items >= 2 else math.nan
    return entropy, normalized


def compute_repeat_rate(items: np.ndarray, offsets: np.ndarray) -> float:
    """Return the fraction of interactions whose item occurred earlier in the same sequence.

    NaN when there are no interactions.
    """
    items, offsets = _check_sequences(items, offsets)
    if len(items) == 0:
        return math.nan
    distinct = _map_chunks(items, offsets, lambda x, o: (_distinct_items(x, o),), 1)[0]
    return (len(items) - int(distinct.sum())) / len(items)


def _distinct_items(items: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Number of distinct items in each sequence."""
    layout = _Layout.from_offsets(offsets)
    codes = _symbol_codes(items)
    width = int(codes.max()) + 1 if len(codes) else 1
    key = np.sort(layout.sequence * width + codes)
    return np.bincount(key[_run_starts(key)] // width, minlength=len(layout.lengths))


def _value_counts(values: np.ndarray) -> np.ndarray:
    """Occurrences of each distinct value."""
    # bincount is the fastest when the ids are small non-negative integers, as re-indexed
    # ids are; a sort handles any other ids.
    if values.min() >= 0 and values.max() <= 4 * len(values) + 1024:
        counts = np.bincount(values)
        return counts[counts > 0]
    return _run_sizes(np.sort(values))
