"""The model card (README.md) written beside a trained model: huggingface_hub's front matter, bertfit's body.

The front matter is `ModelCardData`: library, pipeline tag, base model, tags, and the validation metrics as the
Hub's `model-index` (eval results), so the Hub shows them. The body is templates/model_card.md.jinja.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from bertfit.evaluation.calibration import MIN_ERRORS, MIN_GAIN, MIN_ROWS, T_RANGE
from bertfit.evaluation.metrics import HEADLINE
from bertfit.templates import render_markdown

CARD_METRICS = (*HEADLINE, "samples_f1", "hamming_loss")  # the scalar metrics a card shows, when there
HUB_METRIC = {"mcc": "matthews_correlation", "hamming_loss": "hamming_loss", "accuracy": "accuracy"}  # else "f1"
MODEL_NAME = "Text classifier fine-tuned with bertfit"
TRAIN_KEYS = ("epochs", "batch_size", "lr", "scheduler", "warmup", "weight_decay", "seed", "best_metric")


def model_card(meta: dict[str, Any], metrics: dict[str, Any]) -> str:
    """README.md for a trained model folder: what it is, how it was trained, how well it did."""
    text = render_markdown("model_card.md.jinja", card_data=card_data(meta, metrics).to_yaml(), **_body(meta, metrics))
    return str(ModelCard(text))  # parsed back: the front matter is YAML that huggingface_hub reads


def _body(meta: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """What the card's body shows (a key missing from an old or partial bertfit.json shows as None)."""
    data, train = meta.get("data", {}), meta.get("config", {}).get("train", {})
    per_class, calibration = metrics.get("per_class", {}), meta.get("calibration")
    multi_label = meta.get("labels", {}).get("problem_type") == "multi_label_classification"
    return {
        "model": {**{k: meta.get(k) for k in ("base_model", "train_rows", "precision", "versions")},
                  "val_rows": metrics.get("n")},
        "names": metrics.get("labels", []),
        "data": {**{k: data.get(k) for k in ("max_length", "pair_col", "stride", "aggregate")},
                 "text_cols": data.get("text_cols", []), "long": data.get("long", "truncate")},
        "thresholds": (meta.get("thresholds") or {}).get("how", "global") if multi_label else None,
        "metrics": metrics,
        "scalars": [k for k in CARD_METRICS if k in metrics],
        "per_class": per_class,
        "multi": any("threshold" in c for c in per_class.values()),
        "calibration": calibration,
        "reason": (calibration or {}).get("reason") or "no reason recorded",
        "rule": {"min_rows": MIN_ROWS, "min_errors": MIN_ERRORS, "t_range": T_RANGE, "min_gain": MIN_GAIN},
        "train": {k: train.get(k) for k in TRAIN_KEYS},
    }  # fmt: skip


def card_data(meta: dict[str, Any], metrics: dict[str, Any]) -> ModelCardData:
    """The card's front matter; the validation metrics become eval results (the Hub's model-index)."""
    results = [
        EvalResult(
            task_type="text-classification",
            dataset_type="bertfit-validation",
            dataset_name="validation rows",
            dataset_split="validation",
            metric_type=HUB_METRIC.get(name, "f1"),
            metric_name=name,
            metric_value=float(metrics[name]),
        )
        for name in CARD_METRICS
        if name in metrics
    ]
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="text-classification",
        base_model=meta.get("base_model"),
        tags=["bertfit", "text-classification"],
        metrics=sorted({r.metric_type for r in results}) or None,
        model_name=MODEL_NAME if results else None,
        eval_results=results or None,
    )
