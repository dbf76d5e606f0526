"""Leave-one-out training: learning, resuming, cancelling and model selection."""

import io
import json

import numpy as np
import pytest
import torch

from core.dataset import from_sequences
from core.models import ModelConfig
from core.evaluation import left_pad_windows
from core.models import build_model
from core.training import (
    TrainConfig,
    TrainingCancelled,
    compute_batch_loss,
    compute_loss_sum,
    encode_last_positions,
    split_leave_one_out,
    train_and_evaluate,
)

N_ITEMS = 30


def cyclic_sequences(n_users: int = 160, seed: int = 0) -> list[list[int]]:
    """Sequences that walk the items in a cycle, so the next item is always current + 1."""
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(n_users):
        start = int(rng.integers(N_ITEMS))
        length = int(rng.integers(4, 10))
        sequences.append([(start + step) % N_ITEMS + 1 for step in range(length)])
    sequences[0] = list(range(1, N_ITEMS + 1))
    return sequences


def tiny_model(arch: str = "sasrec", dropout: float = 0.2) -> ModelConfig:
    return ModelConfig(
        arch=arch, n_layers=1, d_model=16, n_heads=2, max_len=8, dropout=dropout, n_items=N_ITEMS
    )


def tiny_training(**overrides) -> TrainConfig:
    settings = dict(
        epochs=6, batch_size=32, lr=0.01, eval_every=2, patience=None, device="cpu", num_threads=1
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def test_learns_cyclic_pattern_better_than_random():
    dataset = from_sequences(cyclic_sequences())

    result = train_and_evaluate(dataset, tiny_model(), tiny_training(epochs=12, eval_every=3))

    # Ranking at random among about 25 candidates gives HR@10 near 0.4 and NDCG@10 near 0.18.
    assert result.metrics["hr@10"] > 0.8
    assert result.metrics["ndcg@10"] > 0.5


@pytest.mark.parametrize("arch, loss", [("sasrec", "bce"), ("llama", "sampled_softmax")])
def test_resume_matches_uninterrupted_run(arch, loss):
    dataset = from_sequences(cyclic_sequences())
    model_config = tiny_model(arch)
    train_config = tiny_training(loss=loss, n_negatives=8, eval_every=2)
    checkpoints = []

    uninterrupted = train_and_evaluate(
        dataset, model_config, train_config, on_checkpoint=checkpoints.append
    )
    buffer = io.BytesIO()
    torch.save(checkpoints[2], buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = train_and_evaluate(dataset, model_config, train_config, resume_from=saved)

    assert len(checkpoints) == 6
    assert resumed.best_epoch == uninterrupted.best_epoch
    assert resumed.epochs_run == uninterrupted.epochs_run == 6
    assert resumed.validation_metrics == uninterrupted.validation_metrics
    assert resumed.metrics == uninterrupted.metrics


def test_resume_reports_remaining_epochs_only():
    dataset = from_sequences(cyclic_sequences())
    checkpoints = []
    train_and_evaluate(dataset, tiny_model(), tiny_training(), on_checkpoint=checkpoints.append)
    epochs_seen = []

    train_and_evaluate(
        dataset,
        tiny_model(),
        tiny_training(),
        on_epoch=lambda report: epochs_seen.append(report.epoch),
        resume_from=checkpoints[3],
    )

    assert epochs_seen == [5, 6]


def test_resume_lower_epoch_limit_ends_run():
    dataset = from_sequences(cyclic_sequences())
    checkpoints = []
    train_and_evaluate(dataset, tiny_model(), tiny_training(epochs=6), on_checkpoint=checkpoints.append)
    shortened = tiny_training(epochs=4)
    epochs_seen = []

    resumed = train_and_evaluate(
        dataset, tiny_model(), shortened, on_epoch=lambda report: epochs_seen.append(report.epoch),
        resume_from=checkpoints[3],
    )
    four_epochs = train_and_evaluate(dataset, tiny_model(), shortened)

    assert epochs_seen == []
    assert resumed.epochs_run == four_epochs.epochs_run == 4
    assert resumed.best_epoch == four_epochs.best_epoch
    assert resumed.metrics == four_epochs.metrics


def test_resume_higher_epoch_limit_continues():
    dataset = from_sequences(cyclic_sequences())
    checkpoints = []
    train_and_evaluate(dataset, tiny_model(), tiny_training(epochs=4), on_checkpoint=checkpoints.append)
    extended = tiny_training(epochs=6)

    resumed = train_and_evaluate(dataset, tiny_model(), extended, resume_from=checkpoints[3])
    six_epochs = train_and_evaluate(dataset, tiny_model(), extended)

    assert resumed.epochs_run == 6
    assert resumed.validation_metrics == six_epochs.validation_metrics
    assert resumed.metrics == six_epochs.metrics


def test_resume_with_other_config_is_rejected():
    dataset = from_sequences(cyclic_sequences())
    checkpoints = []
    train_and_evaluate(
        dataset, tiny_model(), tiny_training(epochs=1), on_checkpoint=checkpoints.append
    )

    with pytest.raises(ValueError, match="lr"):
        train_and_evaluate(
            dataset, tiny_model(), tiny_training(epochs=1, lr=0.1), resume_from=checkpoints[0]
        )
    with pytest.raises(ValueError, match="model config"):
        train_and_evaluate(
            dataset, tiny_model(dropout=0.0), tiny_training(epochs=1), resume_from=checkpoints[0]
        )


def test_cancellation_stops_between_epochs():
    dataset = from_sequences(cyclic_sequences())
    epochs_seen = []
    checkpoints = []

    def cancel_after_second(report):
        epochs_seen.append(report.epoch)
        if report.epoch == 2:
            raise TrainingCancelled("cancel requested")

    with pytest.raises(TrainingCancelled):
        train_and_evaluate(
            dataset,
            tiny_model(),
            tiny_training(),
            on_epoch=cancel_after_second,
            on_checkpoint=checkpoints.append,
        )

    assert epochs_seen == [1, 2]
    assert [checkpoint["progress"]["epoch"] for checkpoint in checkpoints] == [1, 2]


def test_test_items_do_not_influence_model_selection():
    sequences = cyclic_sequences()
    changed = [sequence[:-1] + [(sequence[-1] + 6) % N_ITEMS + 1] for sequence in sequences]
    changed[0] = sequences[0]
    validations = {}

    results = {}
    for name, data in (("original", sequences), ("changed", changed)):
        reports = []
        results[name] = train_and_evaluate(
            from_sequences(data),
            tiny_model(),
            tiny_training(eval_every=1, lr=0.003),
            on_epoch=reports.append,
        )
        validations[name] = [report.validation for report in reports]

    assert validations["original"] == validations["changed"]
    assert results["original"].best_epoch == results["changed"].best_epoch
    assert results["original"].metrics != results["changed"].metrics


def test_early_stopping_after_patience():
    dataset = from_sequences(cyclic_sequences())
    # A learning rate this small leaves every weight unchanged in float32, so the
    # validation metric never improves after the first evaluation.
    config = tiny_training(epochs=10, eval_every=1, patience=2, lr=1e-12)

    result = train_and_evaluate(dataset, tiny_model(), config)

    assert result.stopped_early
    assert result.epochs_run == 3
    assert result.best_epoch == 1


@pytest.mark.parametrize("arch, loss", [("sasrec", "bce"), ("llama", "sampled_softmax")])
def test_length_groups_give_whole_batch_loss(arch, loss):
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, n_layers=2, d_model=16, max_len=40, n_items=N_ITEMS)
    model = build_model(config)
    model.eval()
    rng = np.random.default_rng(0)
    lengths = np.array([1, 3, 8, 9, 15, 16, 17, 30, 39, 2])
    ends = np.cumsum(lengths + 1)
    items = rng.integers(1, N_ITEMS + 1, size=int(ends[-1]))
    inputs = left_pad_windows(items, ends - lengths - 1, ends - 1, 40)
    positives = left_pad_windows(items, ends - lengths, ends, 40)
    if loss == "bce":
        negatives = rng.integers(1, N_ITEMS + 1, size=inputs.shape)
    else:
        negatives = rng.integers(1, N_ITEMS + 1, size=5)

    grouped = compute_batch_loss(model, inputs, positives, negatives, loss, torch.device("cpu"))
    whole = compute_loss_sum(
        model,
        torch.from_numpy(inputs),
        torch.from_numpy(positives),
        torch.from_numpy(negatives),
        loss,
    ) / lengths.sum()

    torch.testing.assert_close(grouped, whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["sasrec", "llama"])
def test_grouped_encoding_matches_whole_batch(arch):
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, n_layers=2, d_model=16, max_len=40, n_items=N_ITEMS)
    model = build_model(config)
    model.eval()
    lengths = np.array([40, 1, 7, 12, 33, 2, 17])
    ends = np.cumsum(lengths)
    items = np.random.default_rng(0).integers(1, N_ITEMS + 1, size=int(ends[-1]))
    inputs = torch.from_numpy(left_pad_windows(items, ends - lengths, ends, 40))

    with torch.no_grad():
        grouped = encode_last_positions(model, inputs, torch.device("cpu"))
        whole = model(inputs)[:, -1, :]

    torch.testing.assert_close(grouped, whole, rtol=1e-5, atol=1e-5)


def test_split_keeps_short_sequences_for_training_only():
    dataset = from_sequences([[1], [2, 3], [4, 5, 6], [1, 2, 3, 4, 5]])

    split = split_leave_one_out(dataset, max_len=3)

    assert split.n_train_only_users == 2
    assert split.validation.targets.tolist() == [5, 4]
    assert split.test.targets.tolist() == [6, 5]
    assert split.validation.inputs.tolist() == [[0, 0, 4], [1, 2, 3]]
    assert split.test.inputs.tolist() == [[0, 4, 5], [2, 3, 4]]
    assert split.train_inputs.tolist() == [[0, 0, 2], [0, 1, 2]]
    assert split.train_positives.tolist() == [[0, 0, 3], [0, 2, 3]]


def test_split_with_higher_min_eval_length():
    dataset = from_sequences([[1, 2, 3], [1, 2, 3, 4]])

    split = split_leave_one_out(dataset, max_len=4, min_eval_length=4)

    assert split.n_train_only_users == 1
    assert split.test.targets.tolist() == [4]
    assert split.train_inputs.tolist() == [[0, 0, 1, 2], [0, 0, 0, 1]]


def test_result_is_json_ready_and_complete():
    dataset = from_sequences(cyclic_sequences())

    result = train_and_evaluate(
        dataset, tiny_model(), tiny_training(epochs=2, protocol="sampled-100", seed=7)
    )
    document = json.loads(json.dumps(result.to_dict()))

    assert document["protocol"] == "sampled-100"
    assert document["config"]["model"]["d_model"] == 16
    assert document["config"]["train"]["adam_betas"] == [0.9, 0.98]
    assert document["seeds"]["torch"] == 7
    assert set(document["versions"]) == {"torch", "numpy", "python"}
    assert document["device"] == "cpu"
    assert document["epochs_run"] == 2
    assert document["sequences_per_s"] > 0
    assert document["split"]["n_evaluated_users"] == 160


def test_n_items_mismatch_is_rejected():
    dataset = from_sequences(cyclic_sequences())
    config = ModelConfig(n_layers=1, d_model=8, n_items=N_ITEMS + 1)

    with pytest.raises(ValueError, match="n_items"):
        train_and_evaluate(dataset, config, tiny_training(epochs=1))


def test_dataset_without_evaluable_users_is_rejected():
    dataset = from_sequences([[1, 2], [2, 1]])
    config = ModelConfig(n_layers=1, d_model=8, n_items=2)

    with pytest.raises(ValueError, match="at least 3 items"):
        train_and_evaluate(dataset, config, tiny_training(epochs=1))


def test_dataset_without_training_pairs_is_rejected():
    dataset = from_sequences([[1, 2, 3], [2, 3, 1]])
    config = ModelConfig(n_layers=1, d_model=8, n_items=3)

    with pytest.raises(ValueError, match="nothing to train on"):
        train_and_evaluate(dataset, config, tiny_training(epochs=1))


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(loss="mse"), "loss"),
        (dict(metric="recall@10"), "metric"),
        (dict(device="tpu"), "device"),
        (dict(protocol="sampled-100", include_history=True), "include_history"),
        (dict(epochs=0), "epochs"),
        (dict(min_eval_length=2), "min_eval_length"),
    ],
)
def test_invalid_train_config_is_rejected(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_finishes():
    dataset = from_sequences(cyclic_sequences())

    result = train_and_evaluate(dataset, tiny_model(), tiny_training(epochs=4, device="cuda"))

    assert result.device.startswith("cuda")
    assert result.metrics["hr@10"] > 0.5
