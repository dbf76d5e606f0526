"""Train a causal recommender with leave-one-out splits and early stopping.

Split (the SASRec protocol, Kang and McAuley 2018): for every user with at least
min_eval_length items (default 3) the last item is the test target, the second-last the
validation target and the rest is training data. Shorter sequences are training data only
(a 1-item sequence contributes no training pair) and are not evaluated. SASRec.pytorch
evaluates users with at least 4 items; min_eval_length=4 reproduces that.

Training pairs: each training sequence s gives inputs s[:-1] and positives s[1:], both cut
to their last max_len items and left-padded. Losses:
- "bce": binary cross-entropy on the positive and one negative per position, drawn
  uniformly from the items outside the user's training items (SASRec);
- "sampled_softmax": softmax cross-entropy over the positive and n_negatives items. The
  negatives are drawn uniformly once per batch and shared by all its positions, and a
  negative equal to the positive is masked out.

Model selection: the validation metric is computed every eval_every epochs and at the
last epoch. The best state is kept, and training stops after `patience` evaluations
without improvement. The test set is evaluated once, on the best state, and is never used
for any choice.
"""

from __future__ import annotations

import contextlib
import copy
import math
import platform
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F

from core.dataset import SequenceDataset
from core.distributed import (
    DataParallel,
    average_gradients,
    broadcast_from_main,
    broadcast_parameters,
    join_torchrun_group,
    sum_over_processes,
)
from core.evaluation import (
    METRIC_NAMES,
    EvaluationSet,
    count_negatives,
    evaluate_ranking,
    left_pad_windows,
)
from core.models import CausalRecommender, ModelConfig, build_model

LOSSES = ("bce", "sampled_softmax")
DEVICES = ("auto", "cpu", "cuda")
CHECKPOINT_VERSION = 1
# Training-config fields that may differ between a checkpoint and the run resuming it. A new
# epoch limit extends a run, or ends it at the next epoch boundary with the test evaluation.
RESUMABLE_CHANGES = ("device", "num_threads", "epochs")
# Redraw rounds for negatives that hit the user's own items. A user who has nearly every
# item could exhaust them, and then keeps a few own items as negatives.
MAX_NEGATIVE_REDRAWS = 100
# Smallest width of a length group in a training batch, in items.
MIN_GROUP_WIDTH = 8


class TrainingCancelled(Exception):
    """Raised by an on_epoch callback to stop training between epochs.

    train_and_evaluate lets it propagate to the caller; the checkpoint of the finished
    epoch has already been passed to on_checkpoint.
    """


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation, selection and evaluation settings of one run.

    Attributes:
        epochs: maximum number of passes over the training sequences.
        batch_size: training sequences per step.
        lr: Adam learning rate.
        adam_betas: Adam's (beta1, beta2); (0.9, 0.98) as SASRec.pytorch uses.
        weight_decay: decoupled weight decay (AdamW); 0 gives plain Adam.
        loss: "bce" or "sampled_softmax".
        n_negatives: negatives per batch for "sampled_softmax"; unused by "bce".
        patience: evaluations without improvement before stopping (so up to
            patience * eval_every epochs); None trains all epochs.
        eval_every: epochs between validation evaluations.
        protocol: evaluation protocol, one of core.evaluation.PROTOCOLS.
        metric: validation metric that selects the best epoch, e.g. "ndcg@10".
        include_history: rank history items too (full protocol only).
        seed: seed of Python, NumPy and torch; the validation and test negatives use
            seed + 1 and seed + 2.
        device: "auto" (cuda when available), "cpu" or "cuda".
        num_threads: torch CPU threads during the run; None keeps the current setting.
        eval_batch_size: users per evaluation batch.
        min_eval_length: shortest sequence that is split into training, validation and
            test items (at least 3); shorter ones are used for training only.
    """

    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    adam_betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.0
    loss: str = "bce"
    n_negatives: int = 100
    patience: int | None = 10
    eval_every: int = 1
    protocol: str = "full"
    metric: str = "ndcg@10"
    include_history: bool = False
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    eval_batch_size: int = 256
    min_eval_length: int = 3

    def __post_init__(self) -> None:
        # A config read back from JSON or a checkpoint may carry the betas as a list.
        object.__setattr__(self, "adam_betas", tuple(float(beta) for beta in self.adam_betas))
        positive = ["epochs", "batch_size", "n_negatives", "eval_every", "eval_batch_size"]
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("patience", "num_threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if len(self.adam_betas) != 2 or not all(0 <= beta < 1 for beta in self.adam_betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        if not isinstance(self.min_eval_length, int) or self.min_eval_length < 3:
            raise ValueError(
                f"min_eval_length must be an integer >= 3, got {self.min_eval_length!r}"
            )
        self.check_choices()

    def check_choices(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.metric not in METRIC_NAMES:
            raise ValueError(f"metric must be one of {', '.join(METRIC_NAMES)}, got {self.metric!r}")
        if count_negatives(self.protocol) is not None and self.include_history:
            raise ValueError("include_history applies to the full protocol only")


@dataclass(frozen=True)
class EpochReport:
    """Progress after one epoch, passed to on_epoch.

    Attributes:
        epoch: 1-based epoch number.
        train_loss: mean training loss over the epoch's sequences.
        validation: validation metrics, or None when this epoch was not evaluated.
        seconds: wall time of the epoch, validation included.
        sequences_per_s: training sequences per second of training steps.
        best_epoch: epoch with the best validation metric so far (0 before any).
        best_validation_metric: its value of TrainConfig.metric, or None before any.
    """

    epoch: int
    train_loss: float
    validation: dict[str, float] | None
    seconds: float
    sequences_per_s: float
    best_epoch: int
    best_validation_metric: float | None


@dataclass(frozen=True)
class TrainResult:
    """Outcome of train_and_evaluate; to_dict() gives a JSON-ready document.

    Attributes:
        metrics: test metrics of the best validation epoch.
        validation_metrics: validation metrics of that epoch.
        best_epoch: epoch whose state was tested.
        epochs_run: epochs trained, over all resumed attempts.
        stopped_early: whether patience ended training before `epochs`.
        train_time_s: wall time of all epochs, validation included, summed over attempts.
        sequences_per_s: training sequences per second of training steps.
        n_parameters: trainable parameters of the model.
        seeds, versions: what makes the run reproducible.
        device: torch device used, e.g. "cpu" or "cuda:0"; device_name names the hardware.
        split: user and sequence counts of the leave-one-out split.
        world_size: processes that trained the model together (torchrun), 1 without it.
    """

    metrics: dict[str, float]
    validation_metrics: dict[str, float]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    train_time_s: float
    sequences_per_s: float
    n_parameters: int
    model_config: ModelConfig
    train_config: TrainConfig
    seeds: dict[str, int]
    versions: dict[str, str]
    device: str
    device_name: str
    split: dict[str, int]
    world_size: int = 1

    def to_dict(self) -> dict:
        train_config = asdict(self.train_config)
        train_config["adam_betas"] = list(self.train_config.adam_betas)
        return {
            "metrics": dict(self.metrics),
            "validation_metrics": dict(self.validation_metrics),
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "train_time_s": self.train_time_s,
            "sequences_per_s": self.sequences_per_s,
            "n_parameters": self.n_parameters,
            "protocol": self.train_config.protocol,
            "config": {"model": asdict(self.model_config), "train": train_config},
            "seeds": dict(self.seeds),
            "versions": dict(self.versions),
            "device": self.device,
            "device_name": self.device_name,
            "split": dict(self.split),
            "world_size": self.world_size,
        }


@dataclass(frozen=True)
class LeaveOneOutSplit:
    """Training arrays and evaluation sets of a leave-one-out split.

    Attributes:
        train_inputs: int64 (n_sequences, max_len), left-padded training inputs.
        train_positives: int64 (n_sequences, max_len), the next item at each input slot.
        train_item_keys: sorted int64 keys row * (n_items + 1) + item of every training
            item of each training row, for rejecting a row's own items as negatives.
        validation, test: the users evaluated (those with >= min_eval_length items).
        n_users: users in the dataset.
        n_train_only_users: users with fewer items, used for training only.
    """

    train_inputs: np.ndarray
    train_positives: np.ndarray
    train_item_keys: np.ndarray
    validation: EvaluationSet
    test: EvaluationSet
    n_users: int
    n_train_only_users: int

    def describe(self) -> dict[str, int]:
        return {
            "n_users": self.n_users,
            "n_evaluated_users": self.validation.n_users,
            "n_train_only_users": self.n_train_only_users,
            "n_training_sequences": len(self.train_inputs),
        }


@dataclass
class Progress:
    """Mutable loop state; everything in it goes into a checkpoint."""

    epoch: int = 0
    best_epoch: int = 0
    best_metric: float = -math.inf
    best_validation: dict[str, float] | None = None
    best_model: dict[str, torch.Tensor] | None = None
    evaluations_without_improvement: int = 0
    stopped_early: bool = False
    elapsed_s: float = 0.0
    train_step_s: float = 0.0
    sequences_trained: int = 0
    seeds: dict[str, int] = field(default_factory=dict)


def concatenated_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Return the indices of the slices [start, start + length) back to back."""
    slice_starts_in_output = np.cumsum(lengths) - lengths
    return np.repeat(starts - slice_starts_in_output, lengths) + np.arange(lengths.sum())


def build_evaluation_set(
    dataset: SequenceDataset, users: np.ndarray, history_ends: np.ndarray, max_len: int
) -> EvaluationSet:
    """Build the set whose targets are items[history_ends] for the given users."""
    starts = dataset.offsets[users]
    lengths = history_ends - starts
    offsets = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return EvaluationSet(
        inputs=left_pad_windows(dataset.items, starts, history_ends, max_len),
        targets=dataset.items[history_ends],
        history_items=dataset.items[concatenated_positions(starts, lengths)],
        history_offsets=offsets,
        n_items=dataset.n_items,
    )


def split_leave_one_out(
    dataset: SequenceDataset, max_len: int, min_eval_length: int = 3
) -> LeaveOneOutSplit:
    """Split each sequence into training items, a validation target and a test target.

    Sequences shorter than min_eval_length are kept whole for training and not evaluated.
    """
    starts, ends = dataset.offsets[:-1], dataset.offsets[1:]
    lengths = ends - starts
    is_evaluated = lengths >= min_eval_length
    evaluated = np.flatnonzero(is_evaluated)

    # Training part: all but the last two items of evaluated users, everything otherwise.
    train_ends = np.where(is_evaluated, ends - 2, ends)
    trainable = np.flatnonzero(train_ends - starts >= 2)
    train_starts, train_ends = starts[trainable], train_ends[trainable]
    train_lengths = train_ends - train_starts
    rows = np.repeat(np.arange(len(trainable)), train_lengths)
    train_items = dataset.items[concatenated_positions(train_starts, train_lengths)]
    keys = np.sort(rows * (dataset.n_items + 1) + train_items)

    return LeaveOneOutSplit(
        train_inputs=left_pad_windows(dataset.items, train_starts, train_ends - 1, max_len),
        train_positives=left_pad_windows(dataset.items, train_starts + 1, train_ends, max_len),
        train_item_keys=keys,
        validation=build_evaluation_set(dataset, evaluated, ends[evaluated] - 2, max_len),
        test=build_evaluation_set(dataset, evaluated, ends[evaluated] - 1, max_len),
        n_users=dataset.n_users,
        n_train_only_users=int(dataset.n_users - len(evaluated)),
    )


def resolve_device(name: str) -> torch.device:
    """Map "auto", "cpu" or "cuda" to a torch device; "cuda" without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch sees no CUDA device")
    if name == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Return bf16 autocast on CUDA and a no-op elsewhere."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def limit_threads(num_threads: int | None) -> Iterator[None]:
    """Set torch's CPU thread count for the block and restore it afterwards."""
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def seed_everything(seed: int) -> dict[str, int]:
    """Seed Python, NumPy and torch (all devices) and return the seeds used."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return {
        "python": seed,
        "numpy": seed,
        "torch": seed,
        "validation_negatives": seed + 1,
        "test_negatives": seed + 2,
    }


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Return AdamW; with weight_decay 0 it is the Adam of SASRec."""
    return torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay
    )


def sample_training_negatives(
    rng: np.random.Generator, rows: np.ndarray, item_keys: np.ndarray, n_items: int, width: int
) -> np.ndarray:
    """Draw one negative per slot (len(rows), width), avoiding each row's training items."""
    draws = rng.integers(1, n_items + 1, size=(len(rows), width))
    for _ in range(MAX_NEGATIVE_REDRAWS):
        keys = rows[:, None] * (n_items + 1) + draws
        found = np.searchsorted(item_keys, keys)
        clashes = item_keys[np.minimum(found, len(item_keys) - 1)] == keys
        if not clashes.any():
            break
        draws[clashes] = rng.integers(1, n_items + 1, size=int(clashes.sum()))
    return draws


def compute_loss_sum(
    model: CausalRecommender,
    inputs: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    loss: str,
) -> torch.Tensor:
    """Return the loss summed over the slots that have a positive (positives != 0).

    For "bce" a slot's loss is BCE(positive, 1) + BCE(negative, 0), so the sum divided
    by the number of slots is SASRec's mean positive loss plus mean negative loss.
    negatives has the shape of positives for "bce" and shape (n_negatives,) for
    "sampled_softmax".
    """
    has_target = positives != 0
    hidden = model(inputs)[has_target]
    positives = positives[has_target]
    positive_logits = model.score(hidden, positives)

    if loss == "bce":
        negative_logits = model.score(hidden, negatives[has_target])
        positive_loss = F.binary_cross_entropy_with_logits(
            positive_logits, torch.ones_like(positive_logits), reduction="sum"
        )
        negative_loss = F.binary_cross_entropy_with_logits(
            negative_logits, torch.zeros_like(negative_logits), reduction="sum"
        )
        return positive_loss + negative_loss

    negative_logits = hidden @ model.item_embedding(negatives).T
    is_positive = negatives[None, :] == positives[:, None]
    negative_logits = negative_logits.masked_fill(is_positive, -math.inf)
    logits = torch.cat((positive_logits[:, None], negative_logits), dim=1).float()
    targets = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, targets, reduction="sum")


def first_item_column(inputs: np.ndarray) -> int:
    """Return the first column of left-padded inputs that contains an item in any row.

    Columns before it are padding in every row. The models count positions from the
    right and mask padded keys, so dropping those columns leaves every output unchanged
    and saves their compute.
    """
    columns_with_items = np.flatnonzero((inputs != 0).any(axis=0))
    return int(columns_with_items[0]) if len(columns_with_items) else inputs.shape[1] - 1


def group_rows_by_length(inputs: np.ndarray) -> list[np.ndarray]:
    """Partition the row indices of left-padded inputs by item count: 1-8, 9-16, 17-32, ..."""
    lengths = (inputs != 0).sum(axis=1)
    buckets = np.ceil(np.log2(np.maximum(lengths, MIN_GROUP_WIDTH))).astype(np.int64)
    return [np.flatnonzero(buckets == bucket) for bucket in np.unique(buckets)]


def compute_batch_loss(
    model: CausalRecommender,
    inputs: np.ndarray,
    positives: np.ndarray,
    negatives: np.ndarray,
    loss: str,
    device: torch.device,
) -> torch.Tensor:
    """Return the mean loss over the batch's target slots, computed in length groups.

    Each group of rows is cut to its longest row, which skips most of the padding when
    many sequences are much shorter than max_len. Rows do not interact in these models,
    so the result is the loss of the whole batch (dropout masks aside).
    """
    total = torch.zeros((), device=device)
    for group in group_rows_by_length(inputs):
        first_column = first_item_column(inputs[group])
        group_negatives = negatives[group, first_column:] if loss == "bce" else negatives
        arrays = (inputs[group, first_column:], positives[group, first_column:], group_negatives)
        tensors = [torch.from_numpy(np.ascontiguousarray(array)).to(device) for array in arrays]
        with autocast(device):
            total = total + compute_loss_sum(model, *tensors, loss)
    return total / max(int((positives != 0).sum()), 1)


def draw_batch_negatives(
    split: LeaveOneOutSplit,
    rows: np.ndarray,
    config: TrainConfig,
    rng: np.random.Generator,
    n_items: int,
) -> np.ndarray:
    """Return negatives of the shape of the rows' positives ("bce") or (n_negatives,)."""
    if config.loss == "bce":
        width = split.train_inputs.shape[1]
        return sample_training_negatives(rng, rows, split.train_item_keys, n_items, width)
    return rng.integers(1, n_items + 1, size=config.n_negatives)


def train_one_epoch(
    model: CausalRecommender,
    optimizer: torch.optim.Optimizer,
    split: LeaveOneOutSplit,
    config: TrainConfig,
    rng: np.random.Generator,
    device: torch.device,
    parallel: DataParallel | None = None,
) -> float:
    """Run one pass over the training sequences in random order; return the mean loss.

    Under data parallelism every process draws the same order and negatives, trains on
    every world_size-th row of each batch, and averages gradients before each step. A last
    batch with fewer rows than processes is skipped.
    """
    model.train()
    order = rng.permutation(len(split.train_inputs))
    total_loss = torch.zeros((), device=device)
    rows_trained = 0

    for start in range(0, len(order), config.batch_size):
        rows = order[start : start + config.batch_size]
        # Drawn for the whole batch in every process, so that their generators stay equal.
        negatives = draw_batch_negatives(split, rows, config, rng, model.config.n_items)
        if parallel is not None:
            if len(rows) < parallel.world_size:
                continue
            share = slice(parallel.rank, None, parallel.world_size)
            rows = rows[share]
            negatives = negatives[share] if config.loss == "bce" else negatives

        loss = compute_batch_loss(
            model,
            split.train_inputs[rows],
            split.train_positives[rows],
            negatives,
            config.loss,
            device,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if parallel is not None:
            average_gradients(model)
        optimizer.step()
        total_loss += loss.detach() * len(rows)
        rows_trained += len(rows)

    loss_sum, rows = total_loss.item(), rows_trained
    if parallel is not None:
        loss_sum, rows = sum_over_processes(loss_sum, rows)
    return loss_sum / max(rows, 1)


def encode_last_positions(
    model: CausalRecommender, inputs: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """Return the float32 hidden state (batch, d_model) at the last slot of every row.

    Rows are encoded in length groups, each cut to its longest row, as in training.
    """
    inputs_on_cpu = inputs.cpu().numpy()
    last_hidden = torch.empty(len(inputs), model.config.d_model, device=device)
    for group in group_rows_by_length(inputs_on_cpu):
        first_column = first_item_column(inputs_on_cpu[group])
        group_index = torch.from_numpy(group).to(device)
        with autocast(device):
            hidden = model(inputs[group_index, first_column:])
        last_hidden[group_index] = hidden[:, -1, :].float()
    return last_hidden


def evaluate_model(
    model: CausalRecommender,
    evaluation_set: EvaluationSet,
    config: TrainConfig,
    device: torch.device,
    seed: int,
) -> dict[str, float]:
    """Return the protocol's metrics of model on evaluation_set.

    The transformer may run in bf16, but item scores are computed in float32, because
    ties count against the target and bf16 would create many.
    """
    model.eval()

    def score_items(inputs: torch.Tensor) -> torch.Tensor:
        return model.score_all(encode_last_positions(model, inputs, device))

    with torch.inference_mode():
        return evaluate_ranking(
            score_items,
            evaluation_set,
            config.protocol,
            include_history=config.include_history,
            seed=seed,
            batch_size=config.eval_batch_size,
            device=device,
        )


def evaluate_on_main(
    model: CausalRecommender,
    evaluation_set: EvaluationSet,
    config: TrainConfig,
    device: torch.device,
    seed: int,
    parallel: DataParallel | None,
) -> dict[str, float]:
    """Return evaluate_model's metrics; under data parallelism rank 0 evaluates and shares them."""
    if parallel is None:
        return evaluate_model(model, evaluation_set, config, device, seed)
    metrics = evaluate_model(model, evaluation_set, config, device, seed) if parallel.is_main else None
    return broadcast_from_main(metrics)


def copy_state(value):
    """Return a deep copy of a (nested) state dict with every tensor on the CPU.

    Training keeps updating the live tensors, so a checkpoint must not share them.
    """
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: copy_state(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(copy_state(item) for item in value)
    return copy.deepcopy(value)


def record_validation(
    progress: Progress,
    epoch: int,
    validation: dict[str, float],
    model: CausalRecommender,
    config: TrainConfig,
) -> None:
    """Keep the model if validation improved; count evaluations without improvement."""
    value = validation[config.metric]
    if progress.best_validation is None or value > progress.best_metric:
        progress.best_metric = value
        progress.best_epoch = epoch
        progress.best_validation = validation
        progress.best_model = copy_state(model.state_dict())
        progress.evaluations_without_improvement = 0
        return
    progress.evaluations_without_improvement += 1
    patience = config.patience
    if patience is not None and progress.evaluations_without_improvement >= patience:
        progress.stopped_early = True


def capture_checkpoint(
    model: CausalRecommender,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
    progress: Progress,
    train_config: TrainConfig,
) -> dict:
    """Return everything needed to resume after the current epoch.

    The dict holds only tensors (on the CPU), numbers, strings, None, lists, tuples and
    dicts, so torch.save writes it and torch.load(..., weights_only=True) reads it back.
    """
    rng_state = {
        "python": random.getstate(),
        "numpy": rng.bit_generator.state,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
    }
    # A shallow copy is enough: progress replaces its dicts and never mutates them.
    progress_state = {item.name: getattr(progress, item.name) for item in fields(progress)}
    return {
        "version": CHECKPOINT_VERSION,
        "model_config": asdict(model.config),
        "train_config": asdict(train_config),
        "model": copy_state(model.state_dict()),
        "optimizer": copy_state(optimizer.state_dict()),
        "rng": rng_state,
        "progress": progress_state,
    }


def check_checkpoint_matches(
    checkpoint: dict, model_config: ModelConfig, train_config: TrainConfig
) -> None:
    """Raise ValueError unless checkpoint was written by a run with the same settings."""
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"unsupported checkpoint version {checkpoint.get('version')!r}")
    if checkpoint["model_config"] != asdict(model_config):
        raise ValueError(
            f"checkpoint model config {checkpoint['model_config']} "
            f"differs from this run's {asdict(model_config)}"
        )
    saved = TrainConfig(**checkpoint["train_config"])
    for name, value in asdict(train_config).items():
        if name not in RESUMABLE_CHANGES and getattr(saved, name) != value:
            raise ValueError(
                f"checkpoint train config has {name}={getattr(saved, name)!r}, "
                f"this run has {value!r}"
            )


def restore_checkpoint(
    checkpoint: dict,
    model: CausalRecommender,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
) -> Progress:
    """Load model, optimizer and random states from checkpoint; return the loop state."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    rng_state = checkpoint["rng"]
    random.setstate(rng_state["python"])
    rng.bit_generator.state = rng_state["numpy"]
    torch.set_rng_state(rng_state["torch"])
    if rng_state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng_state["cuda"])
    return Progress(**checkpoint["progress"])


def should_evaluate(epoch: int, config: TrainConfig) -> bool:
    return epoch % config.eval_every == 0 or epoch == config.epochs


def run_one_epoch(
    model: CausalRecommender,
    optimizer: torch.optim.Optimizer,
    split: LeaveOneOutSplit,
    config: TrainConfig,
    rng: np.random.Generator,
    device: torch.device,
    progress: Progress,
    parallel: DataParallel | None = None,
) -> EpochReport:
    """Train the next epoch, validate if it is due, and advance progress."""
    epoch = progress.epoch + 1
    started = time.perf_counter()
    train_loss = train_one_epoch(model, optimizer, split, config, rng, device, parallel)
    step_seconds = time.perf_counter() - started

    validation = None
    if should_evaluate(epoch, config):
        seed = progress.seeds["validation_negatives"]
        validation = evaluate_on_main(model, split.validation, config, device, seed, parallel)
        record_validation(progress, epoch, validation, model, config)

    seconds = time.perf_counter() - started
    progress.epoch = epoch
    progress.elapsed_s += seconds
    progress.train_step_s += step_seconds
    progress.sequences_trained += len(split.train_inputs)
    best = progress.best_validation
    return EpochReport(
        epoch=epoch,
        train_loss=train_loss,
        validation=validation,
        seconds=seconds,
        sequences_per_s=len(split.train_inputs) / max(step_seconds, 1e-9),
        best_epoch=progress.best_epoch,
        best_validation_metric=best[config.metric] if best is not None else None,
    )


def run_epochs(
    model: CausalRecommender,
    optimizer: torch.optim.Optimizer,
    split: LeaveOneOutSplit,
    config: TrainConfig,
    rng: np.random.Generator,
    device: torch.device,
    progress: Progress,
    on_epoch: Callable[[EpochReport], None] | None,
    on_checkpoint: Callable[[dict], None] | None,
    parallel: DataParallel | None = None,
) -> None:
    """Train until `epochs`, early stopping or cancellation, updating progress in place.

    Under data parallelism only rank 0 calls on_checkpoint and on_epoch, and a
    TrainingCancelled raised there stops every process.
    """
    while progress.epoch < config.epochs and not progress.stopped_early:
        report = run_one_epoch(model, optimizer, split, config, rng, device, progress, parallel)
        if parallel is not None and not parallel.is_main:
            cancel_message = broadcast_from_main(None)
            if cancel_message is not None:
                raise TrainingCancelled(cancel_message)
            continue

        cancelled = None
        try:
            if on_checkpoint is not None:
                on_checkpoint(capture_checkpoint(model, optimizer, rng, progress, config))
            if on_epoch is not None:
                on_epoch(report)
        except TrainingCancelled as error:
            cancelled = error
        if parallel is not None:
            broadcast_from_main(None if cancelled is None else str(cancelled) or "cancelled")
        if cancelled is not None:
            raise cancelled


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def check_inputs(
    dataset: SequenceDataset, model_config: ModelConfig, train_config: TrainConfig
) -> None:
    if model_config.n_items != dataset.n_items:
        raise ValueError(
            f"model_config.n_items is {model_config.n_items}, "
            f"but the dataset has {dataset.n_items} items"
        )
    if not (dataset.lengths >= train_config.min_eval_length).any():
        raise ValueError(
            f"no sequence has at least {train_config.min_eval_length} items, "
            "so there is nothing to validate or test on"
        )


def train_and_evaluate(
    dataset: SequenceDataset,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    on_epoch: Callable[[EpochReport], None] | None = None,
    on_checkpoint: Callable[[dict], None] | None = None,
    resume_from: dict | None = None,
) -> TrainResult:
    """Train model_config on dataset, select the best validation epoch, test it.

    Args:
        dataset: sequences with items 1..n_items; model_config.n_items must equal n_items.
        model_config: architecture and size.
        train_config: optimisation, selection and evaluation settings.
        on_epoch: called after every epoch with an EpochReport; it may raise
            TrainingCancelled to stop, which propagates to the caller.
        on_checkpoint: called after every epoch, before on_epoch, with a dict that
            resume_from accepts. Skipped (and not built) when None.
        resume_from: a dict from on_checkpoint of a run with the same configs (device,
            num_threads and epochs may differ). On the CPU, with the same thread count, the
            resumed run gives the same result as an uninterrupted one with the resumed
            run's epoch limit. A limit at or below the checkpoint's epoch trains nothing
            more and evaluates the best state on the test set. Some CUDA kernels are
            nondeterministic, so on CUDA the results agree only up to that noise.

    Returns:
        TrainResult with the test metrics of the best validation epoch.

    Raises:
        ValueError: when n_items disagree, no sequence is long enough to evaluate or to
            train on, the device is unavailable,
            or resume_from does not match the configs.
        TrainingCancelled: when on_epoch raises it.

    Started by torchrun with more than one process, every process calls this function with
    the same arguments and they train one model data-parallel (core.distributed). Only rank
    0 calls on_epoch and on_checkpoint, and every process returns the same result.
    """
    check_inputs(dataset, model_config, train_config)
    if resume_from is not None:
        check_checkpoint_matches(resume_from, model_config, train_config)
    parallel = join_torchrun_group(train_config.device)
    device = resolve_device(train_config.device)

    with limit_threads(train_config.num_threads):
        seeds = seed_everything(train_config.seed)
        rng = np.random.default_rng(train_config.seed)
        split = split_leave_one_out(dataset, model_config.max_len, train_config.min_eval_length)
        if len(split.train_inputs) == 0:
            raise ValueError(
                "no sequence leaves 2 or more training items after the validation and test "
                "items are held out, so there is nothing to train on"
            )
        model = build_model(model_config).to(device)
        if parallel is not None:
            broadcast_parameters(model)
        optimizer = build_optimizer(model, train_config)
        progress = Progress(seeds=seeds)
        if resume_from is not None:
            progress = restore_checkpoint(resume_from, model, optimizer, rng)

        run_epochs(
            model, optimizer, split, train_config, rng, device, progress, on_epoch, on_checkpoint,
            parallel,
        )
        model.load_state_dict(progress.best_model)
        test_seed = progress.seeds["test_negatives"]
        test_metrics = evaluate_on_main(model, split.test, train_config, device, test_seed, parallel)

    return TrainResult(
        metrics=test_metrics,
        validation_metrics=dict(progress.best_validation),
        best_epoch=progress.best_epoch,
        epochs_run=progress.epoch,
        stopped_early=progress.stopped_early,
        train_time_s=progress.elapsed_s,
        sequences_per_s=progress.sequences_trained / max(progress.train_step_s, 1e-9),
        n_parameters=sum(parameter.numel() for parameter in model.parameters()),
        model_config=model_config,
        train_config=train_config,
        seeds=dict(progress.seeds),
        versions={
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        device=str(device),
        device_name=describe_device(device),
        split=split.describe(),
        world_size=1 if parallel is None else parallel.world_size,
    )
