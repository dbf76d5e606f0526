"""The data-quality profile of a dataset: ApEn and the other entropy measures, counts, the
sequence-length distribution, and the data term D' of the Performance Law.

Two profiles are comparable only when their ProfileParams are equal, so every parameter is
recorded in the profile.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from core.dataset import SequenceDataset
from core.entropy import (
    EntropySummary,
    compute_popularity_entropy,
    compute_repeat_rate,
    measure_entropies,
    select_comparison_ids,
    truncate_sequences,
    validate_entropy_params,
    validate_max_len,
)


@dataclass(frozen=True)
class ProfileParams:
    """Parameters of a profile.

    Attributes:
        m: ApEn and Sample Entropy template length, >= 1.
        r: tolerance. r < 1 is exact matching of item ids; r >= 1 counts ids within r as
            equal, compares the ids as uploaded, depends on how they are numbered, and fails
            on datasets whose ids are not integers. r < 0 only with variant "reference".
        max_len: each sequence is cut to its last max_len items before ApEn, Sample Entropy
            and the LZ estimate are measured and tokens are counted; None keeps all items.
        variant: "pincus", "reference" or "pooled" (see core.entropy.compute_apen and
            core.entropy.compute_pooled_apen).
    """

    m: int = 2
    r: float = 0.0
    max_len: int | None = 50
    variant: str = "pincus"

    def __post_init__(self) -> None:
        validate_entropy_params(self.m, self.r, self.variant)
        validate_max_len(self.max_len)

    def to_dict(self) -> dict[str, int | float | str | None]:
        """Return the parameters as plain JSON-ready values."""
        return {
            "m": int(self.m),
            "r": float(self.r),
            "max_len": None if self.max_len is None else int(self.max_len),
            "variant": self.variant,
        }


@dataclass(frozen=True)
class LengthSummary:
    """Distribution of sequence lengths, in items; NaN for a dataset with no sequences.

    Percentiles use linear interpolation.
    """

    min: float
    p10: float
    p50: float
    p90: float
    max: float
    mean: float

    @classmethod
    def from_lengths(cls, lengths: np.ndarray) -> LengthSummary:
        if len(lengths) == 0:
            return cls(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
        p10, p50, p90 = np.percentile(lengths, [10, 50, 90])
        return cls(
            min=float(lengths.min()),
            p10=float(p10),
            p50=float(p50),
            p90=float(p90),
            max=float(lengths.max()),
            mean=float(lengths.mean()),
        )


@dataclass(frozen=True)
class DataProfile:
    """Data-quality numbers of one dataset for one set of parameters.

    Counts, lengths, density, repeat rate and popularity entropy use every interaction;
    ApEn, Sample Entropy, the LZ estimate and tokens use the sequences cut to params.max_len.

    Attributes:
        params: the parameters the profile was computed with.
        n_users, n_items, n_interactions: counts of the whole dataset.
        lengths: sequence-length distribution.
        density: n_interactions / (n_users * n_items); repeated interactions count each time.
        repeat_rate: fraction of interactions whose item occurred earlier in the same sequence.
        popularity_entropy: Shannon entropy of item popularity, in nats.
        popularity_entropy_normalized: popularity_entropy / ln(n_items), in [0, 1].
        apen: dataset ApEn for params (nats).
        sample_entropy: Sample Entropy with the same m and r (nats).
        lz_entropy: Lempel-Ziv entropy estimate (nats per item).
        tokens: sum over sequences of min(length, max_len).
        d_prime: tokens * apen.mean, the data term D' of the Performance Law.
    """

    params: ProfileParams
    n_users: int
    n_items: int
    n_interactions: int
    lengths: LengthSummary
    density: float
    repeat_rate: float
    popularity_entropy: float
    popularity_entropy_normalized: float
    apen: EntropySummary
    sample_entropy: EntropySummary
    lz_entropy: EntropySummary
    tokens: int
    d_prime: float

    def to_dict(self) -> dict:
        """Return the profile as plain JSON-ready values; NaN (undefined) becomes None."""
        return {
            "params": self.params.to_dict(),
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_interactions": self.n_interactions,
            "lengths": {name: _json_float(value) for name, value in asdict(self.lengths).items()},
            "density": _json_float(self.density),
            "repeat_rate": _json_float(self.repeat_rate),
            "popularity_entropy": _json_float(self.popularity_entropy),
            "popularity_entropy_normalized": _json_float(self.popularity_entropy_normalized),
            "apen": self.apen.to_dict(),
            "sample_entropy": self.sample_entropy.to_dict(),
            "lz_entropy": self.lz_entropy.to_dict(),
            "tokens": self.tokens,
            "d_prime": _json_float(self.d_prime),
        }


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def profile_dataset(dataset: SequenceDataset, params: ProfileParams | None = None) -> DataProfile:
    """Measure the data-quality profile of a dataset.

    Raises:
        ValueError: when params.r >= 1 and the dataset's item ids are not integers.
    """
    params = params or ProfileParams()
    lengths = dataset.lengths

    ids = select_comparison_ids(dataset, params.r)
    cut_items, cut_offsets = truncate_sequences(ids, dataset.offsets, params.max_len)
    entropies = measure_entropies(cut_items, cut_offsets, params.m, params.r, params.variant)
    tokens = int(len(cut_items))

    popularity, popularity_normalized = compute_popularity_entropy(dataset.items, dataset.n_items)
    cells = dataset.n_users * dataset.n_items
    return DataProfile(
        params=params,
        n_users=dataset.n_users,
        n_items=dataset.n_items,
        n_interactions=dataset.n_interactions,
        lengths=LengthSummary.from_lengths(lengths),
        density=dataset.n_interactions / cells if cells else math.nan,
        repeat_rate=compute_repeat_rate(dataset.items, dataset.offsets),
        popularity_entropy=popularity,
        popularity_entropy_normalized=popularity_normalized,
        apen=entropies.apen,
        sample_entropy=entropies.sample_entropy,
        lz_entropy=entropies.lz_entropy,
        tokens=tokens,
        d_prime=tokens * entropies.apen.mean,
    )
