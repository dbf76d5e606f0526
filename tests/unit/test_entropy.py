"""Entropy measures and the data profile against naive oracles, properties and edge cases."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import core.entropy as entropy
from core.dataset import SequenceDataset, from_sequences
from core.entropy import (
    compute_apen,
    compute_lz_entropy,
    compute_pooled_apen,
    compute_popularity_entropy,
    compute_repeat_rate,
    compute_sample_entropy,
    measure_dataset_apen,
    measure_entropies,
    summarize_values,
    truncate_sequences,
)
from core.profile import DataProfile, ProfileParams, profile_dataset
from naive_entropy import (
    naive_apen,
    naive_apen_pooled,
    naive_apen_reference,
    naive_lz_entropy,
    naive_lz_lambdas,
    naive_sample_entropy,
)

TOLERANCE = 1e-12
ORACLE_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def to_csr(sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = [len(sequence) for sequence in sequences]
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    items = np.array([item for sequence in sequences for item in sequence], dtype=np.int64)
    return items, offsets


def assert_same_value(actual: float, expected: float) -> None:
    """Assert two floats agree to TOLERANCE, or are both NaN (undefined)."""
    if math.isnan(expected):
        assert math.isnan(actual), actual
    else:
        assert abs(actual - expected) <= TOLERANCE, (actual, expected)


def assert_close(actual: np.ndarray, expected: list[float]) -> None:
    expected = np.array(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), (actual, expected)
    defined = ~np.isnan(expected)
    np.testing.assert_allclose(actual[defined], expected[defined], rtol=0, atol=TOLERANCE)


@st.composite
def sequence_lists(draw, max_length: int = 300, max_sequences: int = 4) -> list[list[int]]:
    """A few sequences of lengths 0..max_length over an alphabet of 1..50 ids; some
    sequences repeat a short pattern, which gives long repeated substrings."""
    alphabet = draw(st.integers(1, 50))
    sequences = []
    for _ in range(draw(st.integers(1, max_sequences))):
        length = draw(st.integers(0, max_length))
        if draw(st.booleans()):
            pattern = draw(st.lists(st.integers(1, alphabet), min_size=1, max_size=6))
            sequences.append((pattern * (length // len(pattern) + 1))[:length])
        else:
            sequences.append(draw(st.lists(st.integers(1, alphabet), min_size=length, max_size=length)))
    return sequences


template_lengths = st.integers(1, 4)
tolerances = st.sampled_from([0.0, 0.5, 1.0, 2.0])


# ---------------------------------------------------------------------------------------
# Agreement with the naive oracles


@ORACLE_SETTINGS
@given(sequences=sequence_lists(), m=template_lengths, r=tolerances)
def test_apen_pincus_matches_naive(sequences, m, r):
    items, offsets = to_csr(sequences)
    expected = [naive_apen(sequence, m, r) for sequence in sequences]
    assert_close(compute_apen(items, offsets, m, r, "pincus"), expected)


@ORACLE_SETTINGS
@given(sequences=sequence_lists(), m=template_lengths, r=tolerances)
def test_apen_reference_matches_naive(sequences, m, r):
    items, offsets = to_csr(sequences)
    expected = [naive_apen_reference(sequence, m, r) for sequence in sequences]
    assert_close(compute_apen(items, offsets, m, r, "reference"), expected)


@ORACLE_SETTINGS
@given(sequences=sequence_lists(max_length=120), m=template_lengths, r=tolerances)
def test_apen_pooled_matches_naive(sequences, m, r):
    items, offsets = to_csr(sequences)
    assert_close(
        np.array([compute_pooled_apen(items, offsets, m, r)]),
        [naive_apen_pooled(sequences, m, r)],
    )


@ORACLE_SETTINGS
@given(sequences=sequence_lists(), m=template_lengths, r=tolerances)
def test_sample_entropy_matches_naive(sequences, m, r):
    items, offsets = to_csr(sequences)
    expected = [naive_sample_entropy(sequence, m, r) for sequence in sequences]
    assert_close(compute_sample_entropy(items, offsets, m, r), expected)


@ORACLE_SETTINGS
@given(sequences=sequence_lists())
def test_lz_entropy_matches_naive(sequences):
    items, offsets = to_csr(sequences)
    expected = [naive_lz_entropy(sequence) for sequence in sequences]
    assert_close(compute_lz_entropy(items, offsets), expected)


@ORACLE_SETTINGS
@given(
    sequences=sequence_lists(max_length=120),
    m=template_lengths,
    r=tolerances,
    variant=st.sampled_from(entropy.VARIANTS),
)
def test_measure_entropies_matches_naive(sequences, m, r, variant):
    items, offsets = to_csr(sequences)
    measures = measure_entropies(items, offsets, m, r, variant)

    if variant == "pooled":
        assert_same_value(measures.apen.mean, naive_apen_pooled(sequences, m, r))
    else:
        oracle = naive_apen if variant == "pincus" else naive_apen_reference
        expected = summarize_values(np.array([oracle(s, m, r) for s in sequences]))
        assert_summaries_equal(measures.apen, expected)
    expected_sample = summarize_values(np.array([naive_sample_entropy(s, m, r) for s in sequences]))
    assert_summaries_equal(measures.sample_entropy, expected_sample)
    expected_lz = summarize_values(np.array([naive_lz_entropy(s) for s in sequences]))
    assert_summaries_equal(measures.lz_entropy, expected_lz)


def assert_summaries_equal(actual, expected) -> None:
    assert actual.n_used == expected.n_used
    assert actual.n_left_out == expected.n_left_out
    for name in ("mean", "std", "p10", "p50", "p90"):
        assert_same_value(getattr(actual, name), getattr(expected, name))


@contextmanager
def chunk_size(size: int) -> Iterator[None]:
    """Process sequences in chunks of at most `size` items inside the with-block."""
    original = entropy._CHUNK_ITEMS
    entropy._CHUNK_ITEMS = size
    try:
        yield
    finally:
        entropy._CHUNK_ITEMS = original


@settings(max_examples=25, deadline=None)
@given(sequences=sequence_lists(max_length=80, max_sequences=6), m=template_lengths, r=tolerances)
def test_chunked_results_equal_unchunked(sequences, m, r):
    items, offsets = to_csr(sequences)
    whole = measure_entropies(items, offsets, m, r, "pincus")
    with chunk_size(7):
        chunked = measure_entropies(items, offsets, m, r, "pincus")
        chunked_apen = compute_apen(items, offsets, m, r)
    for name in ("apen", "sample_entropy", "lz_entropy"):
        assert_summaries_equal(getattr(chunked, name), getattr(whole, name))
    assert_close(chunked_apen, [naive_apen(sequence, m, r) for sequence in sequences])


def test_pooled_apen_with_wide_ids_matches_naive():
    # Ids near 2**24 leave no room to pack m + 1 = 4 of them into one int64 key, so the
    # pooled variant takes its suffix-array path.
    rng = np.random.default_rng(7)
    sequences = [list(rng.integers(1, 4, size=length) * 5_000_011) for length in (0, 3, 17, 40, 40)]
    items, offsets = to_csr(sequences)
    for m in (1, 3):
        assert math.isclose(
            compute_pooled_apen(items, offsets, m, 0.0),
            naive_apen_pooled(sequences, m, 0.0),
            rel_tol=0,
            abs_tol=TOLERANCE,
        )


# ---------------------------------------------------------------------------------------
# Properties


@ORACLE_SETTINGS
@given(sequences=sequence_lists(), m=template_lengths)
def test_apen_exact_matching_within_bounds(sequences, m):
    # With exact matching ApEn = H(m+1-grams) - H(m-grams), so with K = n - m + 1 windows
    # it lies in [-h(1/K), ln(K - 1)], h the binary entropy in nats.
    items, offsets = to_csr(sequences)
    values = compute_apen(items, offsets, m, 0.0)
    for sequence, value in zip(sequences, values, strict=True):
        if len(sequence) < m + 1:
            assert math.isnan(value)
            continue
        n_windows = len(sequence) - m + 1
        share = 1 / n_windows
        binary_entropy = -share * math.log(share) - (1 - share) * math.log(1 - share)
        assert value >= -binary_entropy - TOLERANCE
        assert value <= math.log(n_windows - 1) + TOLERANCE


@ORACLE_SETTINGS
@given(sequences=sequence_lists(), m=template_lengths, r=st.sampled_from([1.0, 2.0]))
def test_apen_tolerance_within_bounds(sequences, m, r):
    items, offsets = to_csr(sequences)
    values = compute_apen(items, offsets, m, r)
    for sequence, value in zip(sequences, values, strict=True):
        if len(sequence) >= m + 1:
            n_windows = len(sequence) - m + 1
            assert -math.log(n_windows) - TOLERANCE <= value <= math.log(n_windows - 1) + TOLERANCE


def test_pincus_apen_negative_on_short_sequence():
    # Templates (1, 2), (2, 3) differ, so phi^2 = ln(1/2), while the one 3-template gives
    # phi^3 = 0: Pincus's ApEn can be below 0 on short sequences.
    items, offsets = to_csr([[1, 2, 3]])
    assert compute_apen(items, offsets, 2, 0.0)[0] == pytest.approx(-math.log(2), abs=TOLERANCE)
    assert compute_apen(items, offsets, 2, 0.0, "reference")[0] == pytest.approx(math.log(2), abs=TOLERANCE)


@pytest.mark.parametrize("m", [1, 2, 4])
@pytest.mark.parametrize("length", [5, 6, 50, 51])
def test_constant_sequence_measures(m, length):
    items, offsets = to_csr([[7] * length])
    assert compute_apen(items, offsets, m, 0.0)[0] == 0.0
    assert compute_apen(items, offsets, m, 2.0)[0] == 0.0
    assert compute_apen(items, offsets, m, 0.0, "reference")[0] == 0.0
    assert compute_pooled_apen(items, offsets, m, 0.0) == 0.0
    if length >= m + 2:
        assert compute_sample_entropy(items, offsets, m, 0.0)[0] == 0.0
    # Lambda = 1 at the first position and n - i + 1 after it, summing to n (n + 1) / 2.
    expected_lz = 2 * math.log(length) / (length + 1)
    assert compute_lz_entropy(items, offsets)[0] == pytest.approx(expected_lz, abs=TOLERANCE)


@settings(max_examples=30, deadline=None)
@given(
    sequences=sequence_lists(max_length=60, max_sequences=6),
    variant=st.sampled_from(entropy.VARIANTS),
    data=st.data(),
)
def test_dataset_apen_invariant_to_user_order(sequences, variant, data):
    permutation = data.draw(st.permutations(range(len(sequences))))
    original = measure_dataset_apen(from_sequences(sequences), m=2, variant=variant)
    permuted = measure_dataset_apen(
        from_sequences([sequences[k] for k in permutation]), m=2, variant=variant
    )
    assert original.n_used == permuted.n_used
    assert original.n_left_out == permuted.n_left_out
    for name in ("mean", "std", "p10", "p50", "p90"):
        assert_same_value(getattr(permuted, name), getattr(original, name))


@settings(max_examples=30, deadline=None)
@given(sequences=sequence_lists(max_length=80), m=template_lengths)
def test_exact_measures_ignore_id_numbering(sequences, m):
    # Negative and very large ids take the re-coding path. Exact matching compares ids for
    # equality only, so any one-to-one numbering gives the same values.
    items, offsets = to_csr(sequences)
    relabeled = items * -(10**12) + 17
    for variant in ("pincus", "reference"):
        assert_close(
            compute_apen(relabeled, offsets, m, 0.0, variant),
            compute_apen(items, offsets, m, 0.0, variant).tolist(),
        )
    assert_close(compute_lz_entropy(relabeled, offsets), compute_lz_entropy(items, offsets).tolist())
    assert_close(
        compute_sample_entropy(relabeled, offsets, m, 0.0),
        compute_sample_entropy(items, offsets, m, 0.0).tolist(),
    )
    assert_same_value(
        compute_pooled_apen(relabeled, offsets, m, 0.0), compute_pooled_apen(items, offsets, m, 0.0)
    )


def test_lz_lambdas_worked_example():
    # 0-based: Lambda_0 = 1, Lambda_1 = 1 ("2" is new), Lambda_2 = 4 (the rest "121" starts
    # at 0 too, so the end convention adds one), Lambda_3 = 3 ("21" starts at 1), Lambda_4 = 2.
    sequence = [1, 2, 1, 2, 1]
    assert naive_lz_lambdas(sequence) == [1, 1, 4, 3, 2]
    items, offsets = to_csr([sequence])
    expected = 5 * math.log(5) / 11
    assert compute_lz_entropy(items, offsets)[0] == pytest.approx(expected, abs=TOLERANCE)


def test_lz_one_and_zero_items():
    items, offsets = to_csr([[4], []])
    values = compute_lz_entropy(items, offsets)
    assert values[0] == 0.0
    assert math.isnan(values[1])


# ---------------------------------------------------------------------------------------
# Edge cases


def test_apen_short_sequences_left_out():
    sequences = [[1], [1, 2], [1, 2, 1], []]
    items, offsets = to_csr(sequences)
    values = compute_apen(items, offsets, 2, 0.0)
    assert np.isnan(values[[0, 1, 3]]).all()
    assert not math.isnan(values[2])
    summary = measure_dataset_apen(from_sequences(sequences), m=2)
    assert summary.n_used == 1
    assert summary.n_left_out == 3


def test_reference_short_sequences_contribute_zero():
    sequences = [[1], [1, 2], [1, 2, 1], []]
    items, offsets = to_csr(sequences)
    values = compute_apen(items, offsets, 2, 0.0, "reference")
    assert values.tolist()[:2] == [0.0, 0.0]
    assert values[3] == 0.0
    summary = measure_dataset_apen(from_sequences(sequences), m=2, variant="reference")
    assert summary.n_used == 4
    assert summary.n_left_out == 0
    assert summary.mean == pytest.approx(values[2] / 4, abs=TOLERANCE)


@pytest.mark.parametrize("r", [-1.0, -0.5])
def test_reference_negative_r_matches_authors_behaviour(r):
    # No template is within a negative r of itself, so every share C is 0 and becomes
    # 1e-10: phi is ln(1e-10) for every length with a template, and 0 without one.
    sequences = [[], [5], [5, 6], [5, 6, 7], [5, 5, 5, 5, 5], list(range(1, 60))]
    items, offsets = to_csr(sequences)
    values = compute_apen(items, offsets, 2, r, "reference")
    assert_close(values, [naive_apen_reference(sequence, 2, r) for sequence in sequences])
    assert values[2] == pytest.approx(math.log(1e10), abs=TOLERANCE)  # n == m
    assert values[0] == values[1] == 0.0  # n < m
    assert np.all(values[3:] < TOLERANCE)  # n > m: phi(m) and phi(m+1) cancel
    assert np.isnan(compute_sample_entropy(items, offsets, 2, r)).all()


def test_profile_with_negative_r_reference():
    sequences = [[1, 2], [1, 2, 3, 1], [2, 2, 2, 2, 2, 2], [3]]
    profile = profile_dataset(
        from_sequences(sequences), ProfileParams(m=2, r=-1.0, max_len=None, variant="reference")
    )
    expected_apen = np.mean([naive_apen_reference(sequence, 2, -1.0) for sequence in sequences])
    assert profile.apen.mean == pytest.approx(expected_apen, abs=TOLERANCE)
    assert profile.apen.n_used == 4
    assert profile.sample_entropy.n_used == 0
    assert profile.sample_entropy.n_left_out == 4
    expected_lz = np.mean([naive_lz_entropy(sequence) for sequence in sequences])
    assert profile.lz_entropy.mean == pytest.approx(expected_lz, abs=TOLERANCE)


@pytest.mark.parametrize("variant", ["pincus", "pooled"])
def test_negative_r_rejected_outside_reference(variant):
    with pytest.raises(ValueError, match="r must be >= 0"):
        measure_dataset_apen(from_sequences([[1, 2, 3]]), r=-1.0, variant=variant)


def test_empty_dataset_profile_is_json_ready():
    dataset = from_sequences([])
    for variant in entropy.VARIANTS:
        profile = profile_dataset(dataset, ProfileParams(variant=variant))
        document = profile.to_dict()
        json.dumps(document, allow_nan=False)
        assert document["apen"]["mean"] is None
        assert document["apen"]["n_used"] == 0
        assert document["tokens"] == 0
        assert document["d_prime"] is None
        assert document["lengths"]["min"] is None


def test_tolerance_uses_ids_as_uploaded():
    # Uploaded ids 100, 1, 2 are re-indexed to 1, 2, 3. With r = 1 the uploaded ids 100 and
    # 1 are far apart, but their re-indexed ids 1 and 2 are within r, so the two numberings
    # give different ApEn.
    labels = np.array(["100", "1", "2"])
    sequence_ids = [1, 2, 3, 1, 2, 3, 2, 1, 3, 3]
    dataset = SequenceDataset(
        items=np.array(sequence_ids, dtype=np.int64),
        offsets=np.array([0, len(sequence_ids)], dtype=np.int64),
        user_labels=np.array(["u"]),
        item_labels=labels,
    )
    uploaded = [int(labels[item - 1]) for item in sequence_ids]
    summary = measure_dataset_apen(dataset, m=1, r=1.0, max_len=None)
    assert summary.mean == pytest.approx(naive_apen(uploaded, 1, 1.0), abs=TOLERANCE)
    assert summary.mean != pytest.approx(naive_apen(sequence_ids, 1, 1.0), abs=1e-6)


def test_tolerance_rejects_non_integer_ids():
    dataset = SequenceDataset(
        items=np.array([1, 2, 1], dtype=np.int64),
        offsets=np.array([0, 3], dtype=np.int64),
        user_labels=np.array(["u"]),
        item_labels=np.array(["apple", "pear"]),
    )
    with pytest.raises(ValueError, match="not all integers"):
        measure_dataset_apen(dataset, r=1.0)
    with pytest.raises(ValueError, match="not all integers"):
        profile_dataset(dataset, ProfileParams(r=2.0))
    assert measure_dataset_apen(dataset, m=1, r=0.5).n_used == 1


def test_truncate_keeps_last_items():
    items, offsets = to_csr([[1, 2, 3, 4], [5], [6, 7, 8]])
    cut_items, cut_offsets = truncate_sequences(items, offsets, 2)
    assert cut_items.tolist() == [3, 4, 5, 7, 8]
    assert cut_offsets.tolist() == [0, 2, 3, 5]


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        ({"m": 0}, "m"),
        ({"m": 1.5}, "m"),
        ({"m": True}, "m"),
        ({"r": math.nan}, "r"),
        ({"r": math.inf}, "r"),
        ({"r": "0"}, "r"),
        ({"variant": "shannon"}, "variant"),
        ({"max_len": 0}, "max_len"),
        ({"max_len": 2.5}, "max_len"),
    ],
)
def test_invalid_params_name_the_argument(arguments, name):
    with pytest.raises(ValueError, match=rf"^{name} must"):
        ProfileParams(**arguments)
    with pytest.raises(ValueError, match=rf"^{name} must"):
        measure_dataset_apen(from_sequences([[1, 2, 3]]), **arguments)


def test_invalid_offsets_rejected():
    with pytest.raises(ValueError, match="offsets must"):
        compute_apen(np.array([1, 2, 3]), np.array([0, 2]))
    with pytest.raises(ValueError, match="items must"):
        compute_apen(np.array([1.0, 2.0]), np.array([0, 2]))


# ---------------------------------------------------------------------------------------
# Dataset statistics and the profile


def test_popularity_entropy_uniform_and_skewed():
    entropy_nats, normalized = compute_popularity_entropy(np.array([1, 2, 3, 4, 1, 2, 3, 4]), 4)
    assert entropy_nats == pytest.approx(math.log(4), abs=TOLERANCE)
    assert normalized == pytest.approx(1.0, abs=TOLERANCE)
    entropy_nats, normalized = compute_popularity_entropy(np.array([1, 1, 1, 2]), 2)
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert entropy_nats == pytest.approx(expected, abs=TOLERANCE)
    assert normalized == pytest.approx(expected / math.log(2), abs=TOLERANCE)
    assert math.isnan(compute_popularity_entropy(np.array([3, 3]), 1)[1])


def test_popularity_entropy_of_wide_ids():
    values = np.array([10**12, 10**12, 5, -3])
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert compute_popularity_entropy(values, 3)[0] == pytest.approx(expected, abs=TOLERANCE)


def test_repeat_rate_counts_within_sequence_only():
    # Sequence 1 repeats 1 once and 2 once; item 1 in sequence 2 is not a repeat.
    items, offsets = to_csr([[1, 2, 1, 2, 3], [1, 4], []])
    assert compute_repeat_rate(items, offsets) == pytest.approx(2 / 7)
    assert math.isnan(compute_repeat_rate(*to_csr([[]])))


def test_profile_counts_tokens_and_d_prime():
    sequences = [[1, 2, 3, 1, 2, 3, 4], [2, 3], [4, 1, 4, 1]]
    dataset = from_sequences(sequences)
    params = ProfileParams(m=1, r=0.0, max_len=5, variant="pincus")
    profile = profile_dataset(dataset, params)

    assert isinstance(profile, DataProfile)
    assert profile.params == params
    assert (profile.n_users, profile.n_items, profile.n_interactions) == (3, 4, 13)
    assert profile.tokens == 5 + 2 + 4
    cut = [sequence[-5:] for sequence in sequences]
    expected_apen = np.mean([naive_apen(sequence, 1, 0.0) for sequence in cut])
    assert profile.apen.mean == pytest.approx(expected_apen, abs=TOLERANCE)
    assert profile.d_prime == pytest.approx(profile.tokens * expected_apen, abs=TOLERANCE)
    assert profile.density == pytest.approx(13 / 12)
    assert profile.repeat_rate == pytest.approx(5 / 13)
    assert profile.lengths.min == 2
    assert profile.lengths.max == 7
    assert profile.lengths.mean == pytest.approx(13 / 3)
    expected_lz = np.mean([naive_lz_entropy(sequence) for sequence in cut])
    assert profile.lz_entropy.mean == pytest.approx(expected_lz, abs=TOLERANCE)


def test_profile_to_dict_records_params():
    dataset = from_sequences([[1, 2, 3, 1, 2], [3, 2, 1]])
    params = ProfileParams(m=1, r=2, max_len=None, variant="pooled")
    document = profile_dataset(dataset, params).to_dict()

    json.dumps(document, allow_nan=False)
    assert document["params"] == {"m": 1, "r": 2.0, "max_len": None, "variant": "pooled"}
    assert document["apen"]["std"] is None  # the pooled variant has one value
    assert set(document["apen"]) == {"mean", "std", "p10", "p50", "p90", "n_used", "n_left_out"}
    expected_keys = {
        "params", "n_users", "n_items", "n_interactions", "lengths", "density", "repeat_rate",
        "popularity_entropy", "popularity_entropy_normalized", "apen", "sample_entropy",
        "lz_entropy", "tokens", "d_prime",
    }
    assert set(document) == expected_keys
    for value in document.values():
        assert not isinstance(value, np.generic)


def test_profile_params_defaults():
    assert ProfileParams() == ProfileParams(m=2, r=0.0, max_len=50, variant="pincus")
    with pytest.raises(AttributeError):
        ProfileParams().m = 3
