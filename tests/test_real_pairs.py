"""The real default model on sentence pairs: a task that neither sentence alone can decide."""

from __future__ import annotations

import random

import pandas as pd
import pytest

import bertfit

pytestmark = pytest.mark.slow


def pair_rows(n: int, seed: int) -> pd.DataFrame:
    """Does the second sentence name the same colour as the first? Neither sentence alone says."""
    rng = random.Random(seed)
    colours = ["red", "blue", "green", "yellow", "black", "white", "purple", "orange"]
    things = ["car", "house", "door", "shirt", "ball", "cup", "bike", "chair", "hat", "boat"]
    rows = []
    for i in range(n):
        thing, colour = rng.choice(things), rng.choice(colours)
        same = i % 2 == 0
        other = colour if same else rng.choice([c for c in colours if c != colour])
        rows.append({"first": f"the {thing} is {colour}", "second": f"my {thing} looks {other} today",
                     "label": "same" if same else "different"})  # fmt: skip
    return pd.DataFrame(rows)


def test_a_pair_task_that_needs_both_texts_is_learned(tmp_path):
    # 600 rows, 2 epochs: accuracy 1.0 with seeds 42 and 1 on a 2-core AVX-512 EPYC (fp32), 2026-12-06, in 17 s of
    # training; 400 rows gave 1.0 and 0.967; the suite trained on 1,200 rows for 3 epochs before (43 s)
    train, test = pair_rows(600, 0), pair_rows(300, 1)
    result = bertfit.train(train, tmp_path / "m", text_cols=["first"], pair_col="second", max_length=32,
                           epochs=2, progress=False)  # fmt: skip
    scored = bertfit.evaluate(result.model_dir, test)
    print("pairs:", scored["accuracy"])
    assert scored["accuracy"] >= 0.9, scored["accuracy"]
