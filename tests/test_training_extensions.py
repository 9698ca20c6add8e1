"""The Python API's extension points, as sentence-transformers and setfit have them: Trainer callbacks, extra
validation metrics, and TrainingArguments values of the caller's own."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import sentiment_frame
from transformers import TrainerCallback

import bertfit
from bertfit.errors import ConfigError

FAST = dict(epochs=2, lr=3e-3, batch_size=8, warmup=0.0, progress=False, report_to="none", precision="fp32")


class CountSteps(TrainerCallback):
    def __init__(self) -> None:
        self.began, self.steps = 0, 0

    def on_train_begin(self, args, state, control, **kw):
        self.began += 1

    def on_step_end(self, args, state, control, **kw):
        self.steps += 1


class SeenAsClass(TrainerCallback):
    built = 0

    def __init__(self) -> None:
        SeenAsClass.built += 1


def test_a_callback_and_a_cosine_schedule_from_trainer_args_take_effect(tiny_model_dir, tmp_path):
    # 160 rows, 8 per step: 20 steps an epoch, 40 in all, no warmup.
    counter, total, peak = CountSteps(), 40, FAST["lr"]
    result = bertfit.train(sentiment_frame(160, 3), tmp_path / "m", validation=sentiment_frame(40, 4),
                           model=str(tiny_model_dir), callbacks=[counter, SeenAsClass],
                           trainer_args={"lr_scheduler_type": "cosine"}, **FAST)  # fmt: skip
    assert counter.began == 1 and counter.steps == total, "the callback's hooks ran"
    assert SeenAsClass.built == 1, "a callback class is made into an instance"
    log = [json.loads(line) for line in (result.model_dir / "training_log.jsonl").read_text().splitlines()]
    rates = {e["step"]: e["learning_rate"] for e in log if "learning_rate" in e}
    assert max(rates) == total and len(rates) > 5

    def cosine(step: int) -> float:  # the rate the logged step used: the schedule after step - 1 steps
        return peak * 0.5 * (1 + math.cos(math.pi * (step - 1) / total))

    def linear(step: int) -> float:
        return peak * (1 - (step - 1) / total)

    assert rates == {step: pytest.approx(cosine(step), rel=1e-6) for step in rates}
    quarters = [s for s in rates if 0.2 < (s - 1) / total < 0.4 or 0.6 < (s - 1) / total < 0.8]
    assert quarters and all(abs(rates[s] - linear(s)) > 0.05 * peak for s in quarters), "not the linear default"
    meta = json.loads((result.model_dir / "bertfit.json").read_text())
    assert meta["trainer_args"] == {"lr_scheduler_type": "cosine"}


def test_compute_metrics_values_reach_the_result_and_each_evaluation(tiny_model_dir, tmp_path):
    val = sentiment_frame(40, 4)

    def extra(pred) -> dict:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        return {"rows_scored": len(pred.label_ids), "mean_top_logit": float(np.max(logits, -1).mean()), "accuracy": -1}

    result = bertfit.train(sentiment_frame(160, 3), tmp_path / "m", validation=val, model=str(tiny_model_dir),
                           compute_metrics=extra, **FAST)  # fmt: skip
    assert result.metrics["rows_scored"] == len(val) and "mean_top_logit" in result.metrics
    assert result.metrics["accuracy"] != -1, "bertfit's own value wins a name both give"
    assert all(e["eval_rows_scored"] == len(val) and e["eval_accuracy"] != -1 for e in result.metrics["history"])
    saved = json.loads((result.model_dir / "metrics.json").read_text())
    assert saved["rows_scored"] == len(val)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"trainer_args": {"no_such_argument": 1}}, r"'no_such_argument' is not a transformers.TrainingArguments"),
        ({"trainer_args": {"output_dir": "elsewhere"}}, r"output_dir is set by bertfit"),
        ({"trainer_args": {"learning_rate": 1e-3}}, r"learning_rate is set from bertfit's setting lr"),
        ({"trainer_args": {"lr_scheduler_type": "cosine"}, "scheduler": "exponential"}, r"give one of them"),
        ({"callbacks": [print]}, r"is not a transformers.TrainerCallback"),
    ],
)
def test_extensions_bertfit_cannot_honour_are_refused_before_any_work(tiny_model_dir, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message) as refused:
        bertfit.train(sentiment_frame(40, 3), tmp_path / "m", model=str(tiny_model_dir), **FAST, **extra)
    assert "\n" not in str(refused.value), "one line"
    assert not (tmp_path / "m").exists() and not list(tmp_path.iterdir()), "nothing was written"


def test_a_trainer_args_value_transformers_refuses_is_one_config_error(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"^trainer_args: .*not_a_scheduler") as refused:
        bertfit.train(sentiment_frame(40, 3), tmp_path / "m", model=str(tiny_model_dir),
                      trainer_args={"lr_scheduler_type": "not_a_scheduler"}, **FAST)  # fmt: skip
    assert "\n" not in str(refused.value)
