"""Train SASRec on MovieLens-100K under the full protocol (every item ranked).

Usage (from the repository root; starting it again resumes):
    nice -n 10 python bench/train_ml100k.py [--arch sasrec] [--layers 2] [--d-model 64]
Results go to bench/out/ml100k_ARCH_LxD.{json,progress.jsonl,ckpt}.
"""

from __future__ import annotations

import argparse
import json

from resumable_run import OUTPUT_DIR, data_dir, load_movielens, run_resumable

from core.models import ModelConfig
from core.training import TrainConfig


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="sasrec", choices=("sasrec", "llama"))
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--max-len", type=int, default=200, help="input window in items")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=400, help="maximum epochs")
    parser.add_argument("--eval-every", type=int, default=5, help="epochs between validations")
    parser.add_argument(
        "--patience", type=int, default=10, help="validations without improvement before stopping"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    dataset = load_movielens(data_dir() / "ml-100k" / "u.data")
    model_config = ModelConfig(
        arch=arguments.arch,
        n_layers=arguments.layers,
        d_model=arguments.d_model,
        n_heads=arguments.heads,
        max_len=arguments.max_len,
        dropout=arguments.dropout,
        n_items=dataset.n_items,
    )
    train_config = TrainConfig(
        epochs=arguments.epochs,
        batch_size=128,
        lr=0.001,
        loss="bce",
        patience=arguments.patience,
        eval_every=arguments.eval_every,
        protocol="full",
        metric="ndcg@10",
        seed=arguments.seed,
        device=arguments.device,
        num_threads=arguments.threads,
    )
    stem = OUTPUT_DIR / f"ml100k_{arguments.arch}_{arguments.layers}x{arguments.d_model}"
    result = run_resumable(dataset, model_config, train_config, stem)
    summary = {name: result.metrics[name] for name in ("hr@10", "ndcg@10", "hr@20", "mrr")}
    print(json.dumps({"test": summary, "best_epoch": result.best_epoch}, indent=2))


if __name__ == "__main__":
    main()
