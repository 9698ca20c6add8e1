"""Multi-label quality on GoEmotions, and the speed of long-document prediction against short texts.

goemotions  bertfit.train(train.parquet, validation=validation.parquet, multi_label=True) at its defaults, then
            bertfit.evaluate on test.parquet at the tuned per-label thresholds and at a global 0.5; prints
            micro/macro/samples F1 against the targets (micro >= 0.55, macro >= 0.45).
long        one trained model, three inputs of real Yelp sentences: the sentences one per row (short texts,
            one window each), and the same sentences joined into documents of about 1,000 tokens, predicted
            with --long sliding and with --long head-tail. Prints tokens/s (tokens the model ran, windows
            included) and the ratio to the short texts, and checks one output row per document.

python bench/tasks.py                                     # both sections (GoEmotions trains ~25 min on 2 cores)
python bench/tasks.py --only long --model models/goemotions
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from machine import machine

import bertfit
from bertfit.prediction.classifier import Classifier

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TARGETS = {"micro_f1": 0.55, "macro_f1": 0.45}


def goemotions(data: Path, work: str) -> dict[str, Any]:
    folder = data / "goemotions"
    start = time.perf_counter()
    result = bertfit.train(folder / "train.parquet", f"{work}/goemotions", validation=folder / "validation.parquet",
                           multi_label=True, progress=False)  # fmt: skip
    seconds = time.perf_counter() - start
    tuned = bertfit.evaluate(result.model_dir, folder / "test.parquet")
    flat = bertfit.evaluate(result.model_dir, folder / "test.parquet", threshold=0.5)
    keys = ("micro_f1", "macro_f1", "samples_f1", "accuracy", "hamming_loss")
    out = {"model_dir": str(result.model_dir), "train_seconds": round(seconds, 1), "train_rows": result.train_rows,
           "tuned": {k: tuned[k] for k in keys}, "global_0.5": {k: flat[k] for k in keys}}  # fmt: skip
    print(f"\n## goemotions (28 labels), test set, {out['train_rows']:,} training rows, {seconds:.0f} s end to end")
    print(
        "| thresholds | micro-F1 | macro-F1 | samples-F1 | subset acc | Hamming loss |\n|---|---:|---:|---:|---:|---:|"
    )
    for name in ("tuned", "global_0.5"):
        m = out[name]
        print(f"| {name} | {m['micro_f1']:.4f} | {m['macro_f1']:.4f} | {m['samples_f1']:.4f} | {m['accuracy']:.4f} "
              f"| {m['hamming_loss']:.4f} |")  # fmt: skip
    met = {k: out["tuned"][k] >= v for k, v in TARGETS.items()}
    print("targets (tuned): " + ", ".join(f"{k} >= {v}: {'met' if met[k] else 'NOT met'}" for k, v in TARGETS.items()))
    return out


def long_documents(data: Path, model_dir: str, rows: int, doc_tokens: int) -> dict[str, Any]:
    sentences = pd.read_parquet(data / "yelp_polarity_sentences" / "test.parquet")["text"].head(rows).tolist()
    clf = Classifier.from_pretrained(model_dir)
    lengths = clf.encoder(sentences).lengths - 2  # content tokens of each sentence
    docs, current, size = [], [], 0
    for text, n in zip(sentences, lengths):
        current.append(text)
        size += int(n)
        if size >= doc_tokens:
            docs.append(" ".join(current))
            current, size = [], 0
    results = {"short": _speed(clf, sentences)}
    for mode in ("sliding", "head-tail"):
        long_clf = Classifier.from_pretrained(model_dir, long=mode)
        results[mode] = _speed(long_clf, docs)
    short = results["short"]["tokens_per_s"]
    print(f"\n## long documents: {len(sentences):,} Yelp sentences, and the same joined into {len(docs):,} documents "
          f"of ~{doc_tokens} tokens; max_length {clf.max_length}, dtype {clf.dtype}")  # fmt: skip
    print("| input | rows | windows | tokens run | seconds | tokens/s | vs short texts |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['rows']:,} | {r['windows']:,} | {r['tokens']:,} | {r['seconds']:.2f} | "
              f"{r['tokens_per_s']:,.0f} | {r['tokens_per_s'] / short:.2f}x |")  # fmt: skip
    return {"docs": len(docs), "results": results}


def _speed(clf: Classifier, texts: list[str]) -> dict[str, Any]:
    encoded = clf.encoder(texts)
    clf.predict_proba(texts[:64])  # warm-up
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        proba = clf.predict_proba(texts)
        best = min(best, time.perf_counter() - start)
    assert len(proba) == len(texts) and not np.isnan(proba).any(), "one output row per input row"
    tokens = int(encoded.lengths.sum())
    return {"rows": len(texts), "windows": len(encoded.lengths), "tokens": tokens, "seconds": best,
            "tokens_per_s": tokens / best}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("goemotions", "long"), default=None)
    parser.add_argument("--model", default=None, help="model for the long section [the GoEmotions one trained here]")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--long-rows", type=int, default=20_000, help="Yelp sentences for the long section")
    parser.add_argument("--doc-tokens", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    print(json.dumps(machine(), indent=None), f"torch threads {torch.get_num_threads()}")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bertfit-bench-tasks-") as work:
        if args.only in (None, "goemotions"):
            results["goemotions"] = goemotions(args.data, work)
        if args.only in (None, "long"):
            model = args.model or results.get("goemotions", {}).get("model_dir")
            if model is None:
                parser.error("--only long needs --model")
            results["long"] = long_documents(args.data, model, args.long_rows, args.doc_tokens)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
