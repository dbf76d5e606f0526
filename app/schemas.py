"""Request and response bodies of the REST API (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """A request body that rejects unknown fields, so a misspelt option is an error."""

    model_config = ConfigDict(extra="forbid")


class DatasetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    content_sha256: str
    size_bytes: int = Field(description="Size of the uploaded file in bytes, as sent.")
    n_users: int = Field(description="Sequence owners (users or sessions).")
    n_items: int
    n_interactions: int
    rows_dropped: int = Field(description="Rows with an empty user or item dropped on request.")
    detected: dict[str, Any] = Field(description="Format, separator, header, columns and compression used to read the file.")
    warnings: list[str]
    created_at: datetime


class DatasetList(BaseModel):
    items: list[DatasetPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")


Variant = Literal["pincus", "reference", "pooled"]


class ProfilePublic(BaseModel):
    dataset_id: int
    params: dict[str, Any] = Field(description="m, r, max_len and variant; profiles compare only when these are equal.")
    profile: dict[str, Any]
    compute_s: float = Field(description="Seconds it took to compute, the first time.")
    cached: bool


class HealthStatus(BaseModel):
    status: str
    checks: dict[str, str] = {}


Protocol = Literal["full", "sampled-100", "sampled-2499"]
Arch = Literal["sasrec", "llama"]
METRIC_PATTERN = r"^(hr|ndcg)@[1-9][0-9]{0,3}$|^mrr$"
MetricName = Annotated[str, Field(pattern=METRIC_PATTERN, description="hr@K, ndcg@K or mrr.")]


class ModelSize(StrictModel):
    """The architecture fields that a law and a size budget need."""

    arch: Arch = "sasrec"
    n_layers: int = Field(ge=1, le=1024, description="Transformer blocks (N).")
    d_model: int = Field(ge=1, le=65536, description="Embedding width (d).")
    n_heads: int = Field(1, ge=1, le=1024)
    max_len: int = Field(50, ge=1, le=100_000, description="Longest input sequence the model sees.")


class RunCreate(ModelSize):
    """A measured run to import. Give d_prime, or tokens and apen, or a dataset_id to profile."""

    dataset_id: int | None = None
    dataset: str | None = Field(None, max_length=255, description="Dataset name when it was not uploaded.")
    tokens: float | None = Field(None, gt=0)
    apen: float | None = Field(None, gt=0)
    d_prime: float | None = Field(None, gt=0, description="tokens × ApEn; computed when tokens and apen are given.")
    protocol: Protocol
    metrics: dict[MetricName, Annotated[float, Field(ge=0, le=1)]] = Field(min_length=1)
    seed: int | None = None
    train_time_s: float | None = Field(None, ge=0)


class RunImport(StrictModel):
    runs: list[RunCreate] = Field(min_length=1, max_length=10_000)


class RunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    dataset_id: int | None
    dataset_name: str
    source: str = Field(description="verified (trained by a worker) or imported.")
    arch: str
    n_layers: int
    d_model: int
    n_heads: int
    max_len: int
    tokens: float | None
    apen: float | None
    d_prime: float
    protocol: str
    metrics: dict[str, float]
    seed: int | None
    train_time_s: float | None
    job_id: int | None
    details: dict[str, Any] = {}
    created_at: datetime


class RunList(BaseModel):
    items: list[RunPublic]
    next_cursor: str | None
