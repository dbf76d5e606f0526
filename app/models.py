"""Database tables. API schemas live in app/schemas.py, not here."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite has no timezone type and returns naive values; they are UTC by construction here.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


class ApiKey(Base):
    """An API key, stored as the SHA-256 of the secret; the secret is shown once at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Dataset(Base):
    """A parsed interaction log; its arrays live in storage at storage_key."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("tenant_id", "content_sha256", "read_options_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    content_sha256: Mapped[str] = mapped_column(String(64))
    read_options_key: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(255))
    detected: Mapped[dict] = mapped_column(JSON, default=dict)
    n_users: Mapped[int] = mapped_column(BigInteger)
    n_items: Mapped[int] = mapped_column(BigInteger)
    n_interactions: Mapped[int] = mapped_column(BigInteger)
    rows_dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    warnings: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


class DatasetProfile(Base):
    """A data-quality profile, computed once per dataset and parameter set."""

    __tablename__ = "dataset_profiles"
    __table_args__ = (UniqueConstraint("dataset_id", "params_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    params_key: Mapped[str] = mapped_column(String(200))
    profile: Mapped[dict] = mapped_column(JSON)
    compute_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


class Run(Base):
    """One trained model config on one dataset under one protocol, with measured metrics."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_tenant_dataset", "tenant_id", "dataset_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    dataset_name: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))  # "verified" or "imported"
    arch: Mapped[str] = mapped_column(String(32), default="sasrec")
    n_layers: Mapped[int] = mapped_column(Integer)
    d_model: Mapped[int] = mapped_column(Integer)
    n_heads: Mapped[int] = mapped_column(Integer)
    max_len: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[float | None] = mapped_column(Float)
    apen: Mapped[float | None] = mapped_column(Float)
    d_prime: Mapped[float] = mapped_column(Float)
    protocol: Mapped[str] = mapped_column(String(32))
    metrics: Mapped[dict] = mapped_column(JSON)
    seed: Mapped[int | None] = mapped_column(Integer)
    train_time_s: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


class Law(Base):
    """A fitted law for one metric; `fit` is core.fitting.FittedLaw.to_dict()."""

    __tablename__ = "laws"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    form: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(32))
    protocol: Mapped[str | None] = mapped_column(String(32))
    arch: Mapped[str | None] = mapped_column(String(32))
    run_ids: Mapped[list] = mapped_column(JSON, default=list)
    fit: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


class Prediction(Base):
    """A law evaluated at one config for one dataset profile, kept to compare with measured runs."""

    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_lookup", "tenant_id", "dataset_id", "n_layers", "d_model"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    law_ref: Mapped[str] = mapped_column(String(64))  # a law id, or "reference"
    metric: Mapped[str] = mapped_column(String(32))
    protocol: Mapped[str | None] = mapped_column(String(32))
    n_layers: Mapped[int] = mapped_column(Integer)
    d_model: Mapped[int] = mapped_column(Integer)
    d_prime: Mapped[float] = mapped_column(Float)
    predicted: Mapped[float] = mapped_column(Float)
    low: Mapped[float | None] = mapped_column(Float)
    high: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


class Job(Base):
    """A unit of background work; see worker/store.py for the state machine."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "status", "run_after"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    run_after: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    worker_id: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    progress: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now, onupdate=utc_now)
