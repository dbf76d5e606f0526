"""Job kinds: what a worker does for each `Job.kind`, and the registry that maps one to the other.

A handler takes the runner's JobContext, does the long work outside any database
transaction, and returns a ResultWriter: a function that writes the job's rows (a profile,
a run) and returns the job's result document. The runner calls it inside the transaction
that marks the job succeeded, after it has locked the job row and checked that this worker
still owns the job. If the job was taken back, the transaction rolls back and nothing is
written.

Errors: a handler raises FatalJobError (or ValueError) for bad input, which fails the job at
once. It raises RetryableJobError, or lets OSError and database OperationalError through,
for transient trouble (see worker/errors.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.law_service import compare_with_measured, law_profile_params
from app.models import Dataset, DatasetProfile, Prediction, Run
from app.settings import Settings
from app.storage import checkpoint_key
from core.dataset import SequenceDataset
from worker.errors import FatalJobError

if TYPE_CHECKING:
    from core.training import EpochReport
    from worker.runner import JobContext

logger = logging.getLogger(__name__)

ResultWriter = Callable[[Session], dict]
Handler = Callable[["JobContext"], ResultWriter]

_HANDLERS: dict[str, Handler] = {}

# Profile parameters when a payload leaves them out; the same defaults as `perflaw profile`.
DEFAULT_PROFILE_PARAMS = {"m": 2, "r": 0.0, "max_len": 50, "variant": "pincus"}


def register_handler(kind: str) -> Callable[[Handler], Handler]:
    """Return a decorator that registers a handler for jobs of this kind.

    Raises:
        ValueError: another handler is already registered for kind.
    """

    def register(handler: Handler) -> Handler:
        if kind in _HANDLERS and _HANDLERS[kind] is not handler:
            raise ValueError(f"a handler for job kind {kind!r} is already registered")
        _HANDLERS[kind] = handler
        return handler

    return register


def get_handler(kind: str) -> Handler:
    """Return the handler of kind; raises FatalJobError for a kind with none."""
    try:
        return _HANDLERS[kind]
    except KeyError:
        raise FatalJobError(f"unknown job kind {kind!r}; known kinds: {', '.join(sorted(_HANDLERS))}") from None


def registered_kinds() -> list[str]:
    return sorted(_HANDLERS)


def require(payload: dict, key: str):
    """Return payload[key]; raises FatalJobError naming the key when it is missing."""
    if not isinstance(payload, dict) or key not in payload:
        raise FatalJobError(f"job payload is missing {key!r}")
    return payload[key]


def load_dataset(context: JobContext, dataset_id) -> tuple[Dataset, SequenceDataset]:
    """Return the job tenant's dataset row and its stored arrays.

    Raises:
        FatalJobError: the id is not an integer, the dataset does not exist or belongs to
            another tenant, or its stored arrays are missing.
    """
    if not isinstance(dataset_id, int) or isinstance(dataset_id, bool):
        raise FatalJobError(f"dataset_id must be an integer, got {dataset_id!r}")
    with Session(context.engine, expire_on_commit=False) as session:
        dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.tenant_id != context.job.tenant_id:
        raise FatalJobError(f"dataset {dataset_id} not found")
    path = context.storage.path(dataset.storage_key)
    if not path.exists():
        raise FatalJobError(f"the stored arrays of dataset {dataset_id} are missing at {dataset.storage_key!r}")
    return dataset, SequenceDataset.load(path)


@register_handler("analyze_dataset")
def analyze_dataset(context: JobContext) -> ResultWriter:
    """Compute a dataset's data-quality profile and store it, replacing one with equal parameters.

    Payload: {"dataset_id": int, "params": {"m", "r", "max_len", "variant"}}; a missing
    parameter takes its value from DEFAULT_PROFILE_PARAMS.
    """
    from app.dataset_service import profile_params_key
    from core.profile import ProfileParams, profile_dataset

    payload = context.job.payload
    dataset, arrays = load_dataset(context, require(payload, "dataset_id"))
    params = _profile_params(ProfileParams, payload.get("params") or {})
    params_key = profile_params_key(params)

    started = time.perf_counter()
    profile = profile_dataset(arrays, params).to_dict()
    compute_s = round(time.perf_counter() - started, 6)

    def write_profile(session: Session) -> dict:
        profile_id = _upsert_profile(session, dataset.id, params_key, profile, compute_s)
        return {
            "dataset_id": dataset.id,
            "profile_id": profile_id,
            "params_key": params_key,
            "compute_s": compute_s,
            "profile": profile,
        }

    return write_profile


def _profile_params(params_class: type, params: dict):
    if not isinstance(params, dict):
        raise FatalJobError(f"job payload 'params' must be an object, got {params!r}")
    unknown = sorted(set(params) - set(DEFAULT_PROFILE_PARAMS))
    if unknown:
        raise FatalJobError(f"unknown profile parameters {unknown}; known: {sorted(DEFAULT_PROFILE_PARAMS)}")
    try:
        return params_class(**{**DEFAULT_PROFILE_PARAMS, **params})
    except (TypeError, ValueError) as error:
        raise FatalJobError(f"invalid profile parameters: {error}") from None


def _upsert_profile(session: Session, dataset_id: int, params_key: str, profile: dict, compute_s: float) -> int:
    """Insert the profile row, or replace the one with the same (dataset_id, params_key); return its id."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(DatasetProfile).values(
        dataset_id=dataset_id, params_key=params_key, profile=profile, compute_s=compute_s
    )
    statement = statement.on_conflict_do_update(
        index_elements=["dataset_id", "params_key"],
        set_={"profile": statement.excluded.profile, "compute_s": statement.excluded.compute_s},
    )
    return session.execute(statement.returning(DatasetProfile.id)).scalar_one()


@register_handler("train_run")
def train_run(context: JobContext) -> ResultWriter:
    """Train and test one model config on a dataset, resuming from this job's checkpoint if any.

    Payload: {"dataset_id": int, "model": {arch, n_layers, d_model, n_heads, max_len,
    dropout}, "train": {core.training.TrainConfig fields}}. The worker's device replaces
    any "device" in "train". The model's data term (tokens, ApEn, D') comes from the
    dataset's Pincus profile with m = 2, r = 0 and the model's max_len, computed and stored
    first if absent, so a bad dataset fails before any training.

    A checkpoint is written to storage after every epoch. At each epoch boundary the
    handler reports progress, and stops (with the epoch's checkpoint saved) when a cancel
    was requested, the lease was lost or the worker is shutting down.
    """
    from core.models import ModelConfig
    from core.training import TrainConfig

    payload = context.job.payload
    dataset, arrays = load_dataset(context, require(payload, "dataset_id"))
    model_config = _build_config(ModelConfig, require(payload, "model"), "model", n_items=arrays.n_items)
    train_config = _build_config(TrainConfig, require(payload, "train"), "train", device=context.device)
    _check_size_limits(model_config, train_config, context.settings)
    data_term = _data_term(context, dataset, model_config.max_len)

    checkpoints = TrainingCheckpoints(context)
    context.on_final(checkpoints.delete)
    resume_from = checkpoints.load_matching(model_config, train_config)
    summary = _train(context, arrays, model_config, train_config, checkpoints, resume_from)

    def write_run(session: Session) -> dict:
        run = _build_run(context, dataset, model_config, train_config, data_term, summary)
        session.add(run)
        session.flush()
        job_result = _run_result(run, summary)
        job_result["resumed_from_epoch"] = resume_from["progress"]["epoch"] if resume_from else 0
        comparison = compare_with_predictions(session, run)
        if comparison:
            job_result["prediction"] = comparison
            run.details = {**run.details, "prediction": comparison}
        return job_result

    return write_run


def _train(context: JobContext, arrays, model_config, train_config, checkpoints, resume_from) -> dict:
    """Run core.training.train_and_evaluate with the worker's callbacks; return the result as a dict.

    Raises:
        JobCancelled, LeaseLost, WorkerStopping: training stopped at an epoch boundary.
    """
    from core.training import TrainingCancelled, train_and_evaluate

    def report_epoch(report: EpochReport) -> None:
        context.report_progress(_epoch_progress(report, train_config.epochs))
        if context.stop_requested:
            raise TrainingCancelled(f"stopped after epoch {report.epoch}")

    context.raise_if_stopped()
    try:
        result = train_and_evaluate(
            arrays,
            model_config,
            train_config,
            on_epoch=report_epoch,
            on_checkpoint=checkpoints.save,
            resume_from=resume_from,
        )
    except TrainingCancelled:
        context.raise_if_stopped()
        raise FatalJobError("training stopped without a cancel request or a worker shutdown") from None
    return result.to_dict()


def _build_run(context: JobContext, dataset: Dataset, model_config, train_config, data_term, summary: dict) -> Run:
    tokens, apen, d_prime = data_term
    return Run(
        tenant_id=context.job.tenant_id,
        dataset_id=dataset.id,
        dataset_name=dataset.name,
        source="verified",
        arch=model_config.arch,
        n_layers=model_config.n_layers,
        d_model=model_config.d_model,
        n_heads=model_config.n_heads,
        max_len=model_config.max_len,
        tokens=tokens,
        apen=apen,
        d_prime=d_prime,
        protocol=train_config.protocol,
        metrics=summary["metrics"],
        seed=train_config.seed,
        train_time_s=summary["train_time_s"],
        details={key: value for key, value in summary.items() if key != "metrics"},
        job_id=context.job.id,
    )


def _build_config(config_class: type, values, name: str, **overrides):
    """Build a frozen config dataclass from a payload object; bad fields raise FatalJobError."""
    if not isinstance(values, dict):
        raise FatalJobError(f"job payload {name!r} must be an object, got {values!r}")
    try:
        return config_class(**{**values, **overrides})
    except (TypeError, ValueError) as error:
        raise FatalJobError(f"invalid {name} config: {error}") from None


def _check_size_limits(model_config, train_config, settings: Settings) -> None:
    """Enforce PERFLAW_MAX_TRAIN_LAYERS, _D_MODEL and _EPOCHS here too, for jobs not made by the API."""
    limits = {
        "n_layers": (model_config.n_layers, settings.max_train_layers),
        "d_model": (model_config.d_model, settings.max_train_d_model),
        "epochs": (train_config.epochs, settings.max_train_epochs),
    }
    for name, (value, limit) in limits.items():
        if value > limit:
            raise FatalJobError(f"{name} = {value} exceeds this service's limit of {limit}")


def _data_term(context: JobContext, dataset: Dataset, max_len: int) -> tuple[float, float, float]:
    """Return (tokens, apen, d_prime) of the dataset's default profile, storing the profile if new."""
    from app.dataset_service import data_term_for

    with Session(context.engine, expire_on_commit=False) as session, session.begin():
        try:
            return data_term_for(session, context.storage, dataset, max_len)
        except ValueError as error:
            raise FatalJobError(f"cannot profile dataset {dataset.id}: {error}") from None


def _epoch_progress(report: EpochReport, epochs: int) -> dict:
    return {
        "epoch": report.epoch,
        "epochs": epochs,
        "train_loss": report.train_loss,
        "validation": report.validation,
        "best_epoch": report.best_epoch,
        "best_validation_metric": report.best_validation_metric,
        "epoch_s": report.seconds,
    }


def _run_result(run: Run, summary: dict) -> dict:
    keys = (
        "metrics", "validation_metrics", "best_epoch", "epochs_run", "stopped_early", "train_time_s",
        "sequences_per_s", "n_parameters", "device",
    )
    return {
        "run_id": run.id,
        "d_prime": run.d_prime,
        "apen_variant": law_profile_params(run.max_len).variant,
        **{key: summary[key] for key in keys},
    }


def compare_with_predictions(session: Session, run: Run) -> dict[str, dict]:
    """Return, per measured metric, the newest stored prediction for this run's config and its error.

    A prediction matches when it has the run's tenant, dataset, n_layers and d_model, and
    either the run's protocol or none. error = measured - predicted; within_interval says
    whether the prediction's interval contains the measured value.
    """
    predictions = session.scalars(
        select(Prediction)
        .where(
            Prediction.tenant_id == run.tenant_id,
            Prediction.dataset_id == run.dataset_id,
            Prediction.n_layers == run.n_layers,
            Prediction.d_model == run.d_model,
            or_(Prediction.protocol == run.protocol, Prediction.protocol.is_(None)),
        )
        .order_by(Prediction.created_at.desc(), Prediction.id.desc())
    )
    comparison = {}
    for prediction in predictions:
        if prediction.metric in comparison or prediction.metric not in run.metrics:
            continue
        measured = run.metrics[prediction.metric]
        comparison[prediction.metric] = {
            **compare_with_measured(prediction.predicted, prediction.low, prediction.high, measured),
            "prediction_id": prediction.id,
            "law_ref": prediction.law_ref,
        }
    return comparison


class TrainingCheckpoints:
    """The checkpoint file of one train_run job in storage, written atomically every epoch."""

    def __init__(self, context: JobContext) -> None:
        self.context = context
        self.key = checkpoint_key(context.job.id)

    def save(self, state: dict) -> None:
        import torch

        # An open file, because torch.save derives a zip archive name from a path's file
        # name and rejects the temporary ".partial-..." names of atomic_write.
        with self.context.storage.atomic_write(self.key) as path, open(path, "wb") as file:
            torch.save(state, file)

    def load_matching(self, model_config, train_config) -> dict | None:
        """Return the saved checkpoint if it fits these configs; otherwise None (train from scratch).

        A checkpoint that cannot be read, or that another config wrote, is logged and ignored
        rather than failing the job, because training from scratch gives a correct result.
        """
        import torch

        from core.training import check_checkpoint_matches

        path = self.context.storage.path(self.key)
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            check_checkpoint_matches(state, model_config, train_config)
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as error:
            logger.warning(
                "ignoring unusable checkpoint; training from scratch: %s", error, extra=self.context.log_extra
            )
            return None
        logger.info(
            "resuming from checkpoint after epoch %s", state["progress"]["epoch"], extra=self.context.log_extra
        )
        return state

    def delete(self) -> None:
        self.context.storage.delete(self.key)

