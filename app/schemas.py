"""Request and response bodies of the REST API (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


# Text without control characters: PostgreSQL cannot store or compare NUL in a text column.
PRINTABLE_TEXT = r"^[^\x00-\x1f\x7f]*$"
# The id of a stored row: ids are 64-bit, and the database driver rejects larger numbers.
ResourceId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class StrictModel(BaseModel):
    """A request body that rejects unknown fields, so a misspelt option is an error.

    NaN and infinite numbers are rejected too: JSON has no such values, but Python's parser
    accepts `NaN`, `Infinity` and overflowing literals such as 1e400.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


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

    dataset_id: ResourceId | None = None
    dataset: str | None = Field(None, max_length=255, pattern=PRINTABLE_TEXT, description="Dataset name when it was not uploaded.")
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


RobustLoss = Literal["linear", "soft_l1", "huber", "cauchy", "arctan"]
LawChoice = ResourceId | Literal["reference"]
BudgetKind = Literal["params", "non_embedding_params", "flops"]


class LawFitRequest(StrictModel):
    """The runs to fit and the fit settings; the runs must share one protocol and architecture."""

    metric: MetricName = "ndcg@10"
    form: str = Field("performance_law", max_length=64, description="performance_law or scaling_law.")
    protocol: Protocol | None = Field(None, description="Only runs of this protocol; required when runs mix protocols.")
    arch: Arch | None = None
    dataset_id: ResourceId | None = Field(None, description="Only runs of this uploaded dataset.")
    dataset: str | None = Field(None, max_length=255, pattern=PRINTABLE_TEXT, description="Only runs with this dataset name.")
    run_ids: list[ResourceId] | None = Field(None, min_length=1, max_length=10_000, description="Exactly these runs.")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    n_bootstrap: int = Field(200, ge=0, le=2000, description="Bootstrap refits for prediction intervals.")
    robust_loss: RobustLoss = "linear"


class LawPublic(BaseModel):
    id: int
    form: str
    metric: str
    protocol: str | None
    arch: str | None
    run_ids: list[int]
    summary: dict[str, Any]
    created_at: datetime


class LawList(BaseModel):
    items: list[LawPublic]
    next_cursor: str | None


class DataTermRequest(StrictModel):
    """The data a prediction is for: an uploaded dataset, or its D' (and item count) directly."""

    dataset_id: ResourceId | None = Field(None, description="An uploaded dataset; its D' is computed and stored.")
    d_prime: float | None = Field(None, gt=0, description="D' = tokens × ApEn (reference variant, m = 2, r = 0).")
    n_items: int | None = Field(None, ge=1, description="Items in the catalogue; sets embedding sizes for budgets.")
    law: LawChoice | None = Field(
        None, description="A law id, or `reference`. Default: a law fitted on the dataset's own runs, else the reference law."
    )
    metric: MetricName = "ndcg@10"
    protocol: Protocol | None = Field(None, description="Protocol of the dataset's own runs to fit on.")
    max_len: int = Field(50, ge=1, le=100_000)


class SizePoint(StrictModel):
    n_layers: int = Field(ge=1, le=1024)
    d_model: int = Field(ge=1, le=65536)


class PredictionRequest(DataTermRequest):
    configs: list[SizePoint] | None = Field(None, min_length=1, max_length=10_000)
    layers: list[Annotated[int, Field(ge=1, le=1024)]] | None = Field(None, min_length=1, max_length=100)
    d_models: list[Annotated[int, Field(ge=1, le=65536)]] | None = Field(None, min_length=1, max_length=100)
    level: float = Field(0.9, gt=0, lt=1, description="Coverage of the prediction interval.")


class PlanRequest(DataTermRequest):
    budget: float | str = Field(description="Largest allowed size: a number or text such as 20M or 1.5G.")
    budget_kind: BudgetKind = "params"
    arch: Arch = "sasrec"
    n_heads: int = Field(1, ge=1, le=1024)
    layer_grid: list[Annotated[int, Field(ge=1, le=1024)]] | None = Field(None, min_length=1, max_length=64)
    width_grid: list[Annotated[int, Field(ge=1, le=65536)]] | None = Field(None, min_length=1, max_length=64)
    train_tokens: float | None = Field(None, gt=0, description="Tokens seen in training, for a total-FLOPs budget.")


class CheckRequest(DataTermRequest):
    config: ModelSize
    min_metric: float | None = Field(None, ge=0, le=1, description="The predicted metric must reach this.")
    max_gap: float | None = Field(None, ge=0, le=1, description="Largest allowed shortfall below the best config within the budget.")
    budget: float | str | None = Field(None, description="Largest allowed size; default the config's own size.")
    budget_kind: BudgetKind = "params"
    layer_grid: list[Annotated[int, Field(ge=1, le=1024)]] | None = Field(
        None, min_length=1, max_length=64, description="Layer counts searched for the best size (for max_gap)."
    )
    width_grid: list[Annotated[int, Field(ge=1, le=65536)]] | None = Field(
        None, min_length=1, max_length=64, description="Widths searched for the best size (for max_gap)."
    )


class PredictionResponse(BaseModel):
    law: dict[str, Any]
    data: dict[str, Any]
    predictions: list[dict[str, Any]]
    warnings: list[str]


class PlanResponse(BaseModel):
    law: dict[str, Any]
    data: dict[str, Any]
    plan: dict[str, Any]


class CheckResponse(BaseModel):
    passed: bool
    reasons: list[str]
    numbers: dict[str, Any]
    warnings: list[str]
    law: dict[str, Any]
    data: dict[str, Any]


class TrainSettings(StrictModel):
    """Training settings of a verification run; see core/training.py TrainConfig for each."""

    epochs: int = Field(200, ge=1, description="Maximum passes over the training sequences.")
    batch_size: int = Field(128, ge=1, le=65536)
    lr: float = Field(1e-3, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0, le=1)
    loss: Literal["bce", "sampled_softmax"] = "bce"
    n_negatives: int = Field(100, ge=1, le=100_000, description="Negatives per batch for sampled_softmax.")
    patience: int | None = Field(10, ge=1, le=10_000, description="Evaluations without improvement before stopping.")
    eval_every: int = Field(1, ge=1, le=1000)
    protocol: Protocol = "full"
    metric: MetricName = "ndcg@10"
    seed: int = Field(0, ge=0, le=2**31 - 1)


class VerificationConfig(ModelSize):
    dropout: float = Field(0.2, ge=0, lt=1)


class VerificationRequest(StrictModel):
    configs: list[VerificationConfig] = Field(min_length=1, max_length=100)
    train: TrainSettings = TrainSettings()


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    status: str = Field(description="queued, running, succeeded, failed or cancelled.")
    attempts: int
    max_attempts: int
    progress: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    cancel_requested: bool
    run_after: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobList(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None
