"""Dataset operations shared by the routes, the CLI and the worker."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.law_service import law_profile_params
from app.models import Dataset, DatasetProfile
from app.settings import Settings
from app.storage import Storage
from core.dataset import SequenceDataset
from core.profile import ProfileParams, profile_dataset
from core.readers import ReadLimits

BYTES_PER_MB = 1024 * 1024


def dataset_limits(settings: Settings) -> ReadLimits:
    return ReadLimits(
        max_decompressed_bytes=int(settings.max_decompressed_mb * BYTES_PER_MB),
        max_compression_ratio=settings.max_compression_ratio,
        max_line_bytes=settings.max_line_bytes,
        max_users=settings.max_users,
        max_items=settings.max_items,
        max_interactions=settings.max_interactions,
    )


def profile_params_key(params: ProfileParams) -> str:
    """Return a canonical text form of the parameters, equal exactly when the parameters are."""
    return f"m={params.m};r={float(params.r)!r};max_len={params.max_len};variant={params.variant}"


def find_profile(session: Session, dataset_id: int, params_key: str) -> DatasetProfile | None:
    return session.scalar(
        select(DatasetProfile).where(DatasetProfile.dataset_id == dataset_id, DatasetProfile.params_key == params_key)
    )


def load_dataset_arrays(storage: Storage, dataset: Dataset) -> SequenceDataset:
    return SequenceDataset.load(storage.path(dataset.storage_key))


def compute_profile_row(session: Session, storage: Storage, dataset: Dataset, params: ProfileParams) -> DatasetProfile:
    """Compute and insert the profile; a concurrent insert of the same profile wins quietly.

    Raises:
        ValueError: the parameters cannot be used on this dataset (e.g. r >= 1 on ids that
            are not integers).
    """
    arrays = load_dataset_arrays(storage, dataset)
    started = time.perf_counter()
    profile = profile_dataset(arrays, params).to_dict()
    row = DatasetProfile(
        dataset_id=dataset.id,
        params_key=profile_params_key(params),
        profile=profile,
        compute_s=round(time.perf_counter() - started, 6),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return find_profile(session, dataset.id, profile_params_key(params))
    return row


def data_term_for(session: Session, storage: Storage, dataset: Dataset, max_len: int) -> tuple[float, float, float]:
    """Return (tokens, apen, d_prime) of the dataset with the ApEn settings the laws use."""
    params = law_profile_params(max_len)
    stored = find_profile(session, dataset.id, profile_params_key(params)) or compute_profile_row(
        session, storage, dataset, params
    )
    return data_term_of(stored.profile)


def data_term_of(profile: dict) -> tuple[float, float, float]:
    """Return (tokens, apen, d_prime) from a profile document."""
    return float(profile["tokens"]), float(profile["apen"]["mean"]), float(profile["d_prime"])
