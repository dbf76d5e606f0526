"""Fast entropy measures against the naive O(n^2) oracles on the real public datasets.

The oracles are plain Python, so they run on a seeded sample of users per dataset (each
sequence cut to its last 50 items, as the default profile does) and on the longest whole
sequences. The whole datasets are profiled with every variant and checked for consistency.
Skipped, with the reason, when the data folder named by PERFLAW_DATA_DIR is absent.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from core.dataset import SequenceDataset
from core.entropy import (
    VARIANTS,
    compute_apen,
    compute_lz_entropy,
    compute_pooled_apen,
    compute_sample_entropy,
    measure_entropies,
    summarize_values,
    truncate_sequences,
)
from core.profile import ProfileParams, profile_dataset
from core.readers import ReadOptions, read_interactions

pytestmark = pytest.mark.slow

TOLERANCE = 1e-12
MAX_LEN = 50

# Folder, file and read options of each dataset under the data folder.
DATASETS = {
    "ml-100k": (
        "ml-100k/u.data",
        ReadOptions(
            format="delimited", separator="\t", header=False,
            user_column=0, item_column=1, timestamp_column=3,
        ),
    ),
    "amazon-beauty": ("amazon-beauty/Beauty.txt", ReadOptions(format="sequence-lines")),
    "amazon-sports": ("amazon-sports/Sports_and_Outdoors.txt", ReadOptions(format="sequence-lines")),
    "amazon-toys": ("amazon-toys/Toys_and_Games.txt", ReadOptions(format="sequence-lines")),
    "amazon-video-sasrec": ("amazon-video-sasrec/Video.txt", ReadOptions(format="sasrec")),
    "diginetica-sample": (
        "diginetica-sample/sample_train-item-views.csv",
        ReadOptions(
            format="delimited", separator=";", header=True,
            user_column="session_id", item_column="item_id", timestamp_column="timeframe",
        ),
    ),
}


def load_naive_oracles() -> ModuleType:
    """Import the oracles of the unit tests, which live outside this test folder."""
    path = Path(__file__).resolve().parents[1] / "unit" / "naive_entropy.py"
    spec = importlib.util.spec_from_file_location("naive_entropy_oracles", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


naive = load_naive_oracles()


@pytest.fixture(scope="module", params=sorted(DATASETS))
def real_dataset(request, data_dir: Path) -> SequenceDataset:
    relative_path, options = DATASETS[request.param]
    path = data_dir / relative_path
    if not path.is_file():
        pytest.skip(f"dataset file not available: {path}")
    return read_interactions(path, options).dataset


def sample_sequences(
    dataset: SequenceDataset, n_users: int, seed: int, uploaded_ids: bool = False
) -> list[list[int]]:
    """The last MAX_LEN items of n_users users drawn without replacement."""
    ids = dataset.original_numeric_items() if uploaded_ids else dataset.items
    rng = np.random.default_rng(seed)
    users = rng.choice(dataset.n_users, size=min(n_users, dataset.n_users), replace=False)
    sequences = []
    for user in users:
        start, stop = dataset.offsets[user], dataset.offsets[user + 1]
        sequences.append(ids[max(start, stop - MAX_LEN) : stop].tolist())
    return sequences


def to_csr(sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum([len(sequence) for sequence in sequences], out=offsets[1:])
    items = np.array([item for sequence in sequences for item in sequence], dtype=np.int64)
    return items, offsets


def assert_close(actual: np.ndarray, expected: list[float]) -> None:
    expected = np.array(expected, dtype=np.float64)
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    defined = ~np.isnan(expected)
    np.testing.assert_allclose(actual[defined], expected[defined], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("m", [1, 2])
def test_exact_apen_matches_naive_on_sample(real_dataset, m):
    sequences = sample_sequences(real_dataset, 300, seed=11)
    items, offsets = to_csr(sequences)
    pincus = [naive.naive_apen(sequence, m, 0.0) for sequence in sequences]
    assert_close(compute_apen(items, offsets, m, 0.0, "pincus"), pincus)
    reference = [naive.naive_apen_reference(sequence, m, 0.0) for sequence in sequences]
    assert_close(compute_apen(items, offsets, m, 0.0, "reference"), reference)


def test_tolerance_apen_matches_naive_on_sample(real_dataset):
    sequences = sample_sequences(real_dataset, 100, seed=12, uploaded_ids=True)
    items, offsets = to_csr(sequences)
    expected = [naive.naive_apen(sequence, 2, 2.0) for sequence in sequences]
    assert_close(compute_apen(items, offsets, 2, 2.0), expected)
    expected = [naive.naive_sample_entropy(sequence, 2, 2.0) for sequence in sequences]
    assert_close(compute_sample_entropy(items, offsets, 2, 2.0), expected)


def test_sample_entropy_and_lz_match_naive_on_sample(real_dataset):
    sequences = sample_sequences(real_dataset, 300, seed=13)
    items, offsets = to_csr(sequences)
    expected = [naive.naive_sample_entropy(sequence, 2, 0.0) for sequence in sequences]
    assert_close(compute_sample_entropy(items, offsets, 2, 0.0), expected)
    expected = [naive.naive_lz_entropy(sequence) for sequence in sequences]
    assert_close(compute_lz_entropy(items, offsets), expected)


def test_pooled_apen_matches_naive_on_sample(real_dataset):
    # The pooled oracle compares every pair of windows of the pool, so the pool is kept to
    # about 800 items.
    sequences = sample_sequences(real_dataset, 60, seed=14)
    n_kept = int(np.searchsorted(np.cumsum([len(s) for s in sequences]), 800, side="right"))
    sequences = sequences[: max(n_kept, 1)]
    items, offsets = to_csr(sequences)
    for m in (1, 2):
        assert math.isclose(
            compute_pooled_apen(items, offsets, m, 0.0),
            naive.naive_apen_pooled(sequences, m, 0.0),
            rel_tol=0,
            abs_tol=TOLERANCE,
        )


def test_longest_and_median_whole_sequences_match_naive(real_dataset):
    by_length = np.argsort(real_dataset.lengths, kind="stable")
    chosen = [by_length[-1], by_length[len(by_length) // 2]]
    sequences = [real_dataset.sequence(user).tolist() for user in chosen]
    items, offsets = to_csr(sequences)
    assert_close(compute_lz_entropy(items, offsets), [naive.naive_lz_entropy(s) for s in sequences])
    assert_close(compute_apen(items, offsets, 2, 0.0), [naive.naive_apen(s, 2, 0.0) for s in sequences])
    assert_close(
        compute_sample_entropy(items, offsets, 2, 0.0),
        [naive.naive_sample_entropy(s, 2, 0.0) for s in sequences],
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_whole_dataset_profile_is_consistent(real_dataset, variant):
    profile = profile_dataset(real_dataset, ProfileParams(variant=variant))
    document = profile.to_dict()
    json.dumps(document, allow_nan=False)

    assert profile.tokens == int(np.minimum(real_dataset.lengths, MAX_LEN).sum())
    assert profile.apen.n_used + profile.apen.n_left_out == real_dataset.n_users
    assert profile.lz_entropy.n_used == real_dataset.n_users
    assert math.isclose(profile.d_prime, profile.tokens * profile.apen.mean, rel_tol=1e-15)

    items, offsets = truncate_sequences(real_dataset.items, real_dataset.offsets, MAX_LEN)
    if variant == "pooled":
        expected_mean = compute_pooled_apen(items, offsets, 2, 0.0)
    else:
        expected_mean = summarize_values(compute_apen(items, offsets, 2, 0.0, variant)).mean
    assert math.isclose(profile.apen.mean, expected_mean, rel_tol=0, abs_tol=TOLERANCE)


def test_uncut_shared_pass_equals_single_measures(real_dataset):
    # With max_len=None the LZ estimate needs the full suffix-array depth; the shared pass
    # must agree with the measures computed one at a time.
    measures = measure_entropies(real_dataset.items, real_dataset.offsets, 2, 0.0, "pincus")
    lz = summarize_values(compute_lz_entropy(real_dataset.items, real_dataset.offsets))
    apen = summarize_values(compute_apen(real_dataset.items, real_dataset.offsets, 2, 0.0))
    assert measures.lz_entropy == lz
    assert measures.apen == apen
