"""The proof that the product works: the real default model, fine-tuned on real data, offline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA
from transformers import pipeline
from typer.testing import CliRunner

import bertfit
from bertfit.cli import app

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SHARED_DATA / "sst2").is_dir(), reason="needs ../shared/data/sst2"),
]


@pytest.fixture(scope="module")
def sst2_model(tmp_path_factory):
    """all-MiniLM-L6-v2 fine-tuned on 4,000 SST-2 training rows with bertfit's defaults.

    4,000, not 2,000: at 2,000 rows (171 steps) the score moves by +-0.02 with the seed (0.778 and 0.807 for seeds
    42 and 1 at lr 2e-4; 0.794 at lr 1e-4), too close to the floor to say anything; 4,000 rows gave 0.835.
    """
    train = pd.read_parquet(SHARED_DATA / "sst2" / "train.parquet").sample(4000, random_state=0)
    out = tmp_path_factory.mktemp("sst2") / "model"
    result = bertfit.train(train, out, progress=False)  # validation: a stratified 10% of these rows
    return result


def test_default_model_reaches_080_on_sst2_validation(sst2_model, tmp_path):
    report = bertfit.evaluate(
        sst2_model.model_dir, SHARED_DATA / "sst2" / "validation.parquet", output=tmp_path / "m.json"
    )
    print(f"SST-2 validation (872 rows) after 4,000 training rows: accuracy {report['accuracy']:.4f}")
    assert report["n"] == 872
    assert report["accuracy"] >= 0.80
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["accuracy"] == report["accuracy"] and len(saved["confusion_matrix"]) == 2
    meta = json.loads((sst2_model.model_dir / "bertfit.json").read_text())
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_pipeline_loads_the_folder_and_agrees_with_bertfit_predict(sst2_model, tmp_path):
    val = pd.read_parquet(SHARED_DATA / "sst2" / "validation.parquet")
    val.to_csv(tmp_path / "val.csv", index=False)
    runner = CliRunner()
    for precision in ("fp32", "auto"):
        result = runner.invoke(
            app,
            [
                "predict",
                str(sst2_model.model_dir),
                str(tmp_path / "val.csv"),
                str(tmp_path / f"pred-{precision}.csv"),
                "--precision",
                precision,
            ],
        )
        assert result.exit_code == 0, result.output
    pipe = pipeline("text-classification", model=str(sst2_model.model_dir), device="cpu")
    theirs = [p["label"] for p in pipe(val.text.tolist(), batch_size=64)]
    exact = pd.read_csv(tmp_path / "pred-fp32.csv")
    assert exact.pred_label.tolist() == theirs
    assert exact.text.tolist() == val.text.tolist()
    fast = pd.read_csv(tmp_path / "pred-auto.csv")  # bf16 on AMX CPUs: ~99.5% label agreement expected
    assert np.mean(fast.pred_label.to_numpy() == np.asarray(theirs)) >= 0.98
