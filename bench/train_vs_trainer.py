"""Fine-tuning: bertfit's defaults vs a hand-written transformers.Trainer script (the tutorial recipe).

Both start from the same model and data, train the same number of epochs and are scored on the same test split.
The anchor follows the Hugging Face text-classification tutorial: lr 2e-5, batch 16, weight decay 0.01, dynamic
padding, fp32, random batches, best epoch by validation accuracy. Prints accuracy, macro-F1, time, and ratios.

    python bench/train_vs_trainer.py --dataset emotion --epochs 3
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from sklearn.metrics import accuracy_score, f1_score
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

import bertfit
from bertfit.modeling import resolve_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load(dataset: str, rows: int | None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    folder = DATA / dataset
    train = pd.read_parquet(folder / "train.parquet")
    if rows:
        train = train.sample(rows, random_state=0)
    return train, pd.read_parquet(folder / "validation.parquet"), pd.read_parquet(folder / "test.parquet")


def run_bertfit(train, val, test, epochs: float, work: str) -> dict:
    start = time.perf_counter()
    bertfit.train(train, f"{work}/bertfit", validation=val, epochs=epochs, progress=False)
    seconds = time.perf_counter() - start
    report = bertfit.evaluate(f"{work}/bertfit", test)
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "train_s": seconds}


def run_trainer(train, val, test, epochs: float, work: str) -> dict:
    path, _ = resolve_model(None)
    names = sorted(train.label.unique())
    ids = {n: i for i, n in enumerate(names)}
    tok = AutoTokenizer.from_pretrained(path)

    def dataset(df: pd.DataFrame) -> list[dict]:
        enc = tok(df.text.tolist(), truncation=True, max_length=128)
        return [
            {"input_ids": i, "attention_mask": a, "labels": ids[y]}
            for i, a, y in zip(enc["input_ids"], enc["attention_mask"], df.label)
        ]

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(names))

    def metrics(p):
        return {"accuracy": accuracy_score(p.label_ids, p.predictions.argmax(-1))}

    args = TrainingArguments(
        output_dir=f"{work}/trainer",
        learning_rate=2e-5,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        num_train_epochs=epochs,
        weight_decay=0.01,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        save_total_limit=1,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        seed=42,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset(train),
        eval_dataset=dataset(val),
        data_collator=DataCollatorWithPadding(tok),
        compute_metrics=metrics,
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    pred = trainer.predict(dataset(test))
    y, yhat = pred.label_ids, pred.predictions.argmax(-1)
    return {"accuracy": accuracy_score(y, yhat), "macro_f1": f1_score(y, yhat, average="macro"), "train_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="emotion")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--train-rows", type=int, default=None, help="sample this many training rows")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    train, val, test = load(args.dataset, args.train_rows)
    print(
        f"{args.dataset}: {len(train)} train / {len(val)} validation / {len(test)} test rows, "
        f"{args.epochs:g} epochs, torch threads {torch.get_num_threads()}"
    )
    with tempfile.TemporaryDirectory() as work:
        results = {
            "bertfit": run_bertfit(train, val, test, args.epochs, work),
            "hand-written Trainer": run_trainer(train, val, test, args.epochs, work),
        }
    print(f"{'':22} {'test acc':>9} {'macro-F1':>9} {'train s':>8}")
    for name, r in results.items():
        print(f"{name:22} {r['accuracy']:9.4f} {r['macro_f1']:9.4f} {r['train_s']:8.0f}")
    b, t = results["bertfit"], results["hand-written Trainer"]
    print(
        f"ratios bertfit/Trainer: accuracy {b['accuracy'] / t['accuracy']:.3f}, "
        f"macro-F1 {b['macro_f1'] / t['macro_f1']:.3f}, training speed {t['train_s'] / b['train_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
