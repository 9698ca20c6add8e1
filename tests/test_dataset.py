"""The tokenized training cache (built once, reused, rebuilt when data changes) and the epoch order over it."""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import sentiment_frame
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

import bertfit
import bertfit.training.trainer
from bertfit.config import DataConfig
from bertfit.data.cache import TokenizedRows, tokenize_labelled
from bertfit.errors import DataError
from bertfit.labels import LabelSchema
from bertfit.training.losses import class_weights, training_loss
from bertfit.training.sampling import EpochSampler


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def tokenize(path, tokenizer, cache, **kwargs):
    return tokenize_labelled(path, DataConfig(), tokenizer, 16, cache_dir=cache, **kwargs)


def test_cache_holds_what_the_tokenizer_gives_and_is_reused(tokenizer, tmp_path, caplog):
    df = sentiment_frame(300, seed=1)
    df.loc[[3, 50], "text"] = ["", None]
    df.loc[7, "label"] = None
    df.loc[9, "text"] = " ".join(["great"] * 40)  # longer than max_length 16
    df.to_parquet(tmp_path / "train.parquet")
    with caplog.at_level(logging.INFO, logger="bertfit"):
        data, schema = tokenize(tmp_path / "train.parquet", tokenizer, tmp_path / "cache")
    assert schema.names == ["negative", "positive"]
    assert data.dropped == {"empty text": 2, "missing label": 1} and data.truncated == 1
    kept = df.drop(index=[3, 7, 50]).reset_index(drop=True)
    rows = TokenizedRows(data)
    expected = tokenizer(kept.text.tolist(), truncation=True, max_length=16)["input_ids"]
    assert [rows[i]["input_ids"] for i in range(len(rows))] == expected
    assert [rows[i]["labels"] for i in range(len(rows))] == kept.label.map(schema.label2id).tolist()
    assert rows.lengths.tolist() == [len(e) for e in expected]
    assert "dropped 2 of 300 rows with empty text" in caplog.text

    built = data.folder / "tokens.arrow"
    stamp = built.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bertfit"):
        again, _ = tokenize(tmp_path / "train.parquet", tokenizer, tmp_path / "cache")
    assert again.folder == data.folder and built.stat().st_mtime_ns == stamp
    assert "using tokenized rows cached" in caplog.text and "dropped 2 of 300" in caplog.text, "warnings repeat"

    sentiment_frame(310, seed=1).to_parquet(tmp_path / "train.parquet")  # the data changed: tokenize again
    changed, _ = tokenize(tmp_path / "train.parquet", tokenizer, tmp_path / "cache")
    assert changed.folder != data.folder and len(changed) == 310


def test_cache_is_a_datasets_arrow_file(tokenizer, tmp_path):
    datasets = pytest.importorskip("datasets")
    df = sentiment_frame(50, seed=2)
    data, _ = tokenize(df, tokenizer, tmp_path)
    opened = datasets.Dataset.from_file(str(data.folder / "tokens.arrow"))
    assert opened.num_rows == 50 and set(opened.column_names) == {"input_ids", "length", "label_code"}
    assert opened[4]["input_ids"] == tokenizer(df.text[4], truncation=True, max_length=16)["input_ids"]


def test_folder_of_shards_and_validation_labels(tokenizer, tmp_path):
    df = sentiment_frame(120, seed=3)
    (tmp_path / "shards").mkdir()
    df.iloc[:50].to_csv(tmp_path / "shards" / "a.csv", index=False)
    df.iloc[50:].to_json(tmp_path / "shards" / "b.jsonl", orient="records", lines=True)
    data, schema = tokenize(tmp_path / "shards", tokenizer, tmp_path / "cache")
    whole, _ = tokenize(df, tokenizer, tmp_path / "cache")
    rows, whole_rows = TokenizedRows(data), TokenizedRows(whole)
    assert [rows[i] for i in range(120)] == [whole_rows[i] for i in range(120)]

    unseen = df.assign(label=["neutral", "positive"] * 60)
    with pytest.raises(DataError, match=r"labels that the training data never saw: 'neutral' \(60 rows\)"):
        tokenize(unseen, tokenizer, tmp_path / "cache", schema=schema, role="validation")


@pytest.mark.parametrize("form", ["csv", "jsonl", "frame"])
def test_integer_labels_are_ordered_as_numbers_in_any_form_and_window(form, tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(bertfit.data.io, "WINDOW_ROWS", 7)  # labels are typed from every window together
    df = sentiment_frame(60, seed=5).assign(label=[str(v) for v in [10, 2, 1] * 20])
    df.loc[:6, "label"] = "2"  # the first window holds one label only
    source = {"csv": tmp_path / "t.csv", "jsonl": tmp_path / "t.jsonl", "frame": df}[form]
    if form == "csv":
        df.to_csv(source, index=False)
    elif form == "jsonl":
        df.to_json(source, orient="records", lines=True)  # labels stay JSON strings: "10"
    data, schema = tokenize(source, tokenizer, tmp_path / "cache")
    assert schema.names == ["1", "2", "10"]
    assert data.labels.tolist() == df.label.map({"1": 0, "2": 1, "10": 2}).tolist()


@pytest.mark.parametrize("form", ["jsonl", "frame"])
def test_true_and_false_label_strings_stay_as_written(form, tokenizer, tmp_path):
    df = sentiment_frame(40, seed=6).assign(label=["true", "false"] * 20)
    source = df if form == "frame" else tmp_path / "t.jsonl"
    if form == "jsonl":
        df.to_json(source, orient="records", lines=True)
    _, schema = tokenize(source, tokenizer, tmp_path / "cache")
    assert schema.names == ["false", "true"]


def test_true_and_false_labels_in_a_csv_stay_as_written(tokenizer, tmp_path):
    sentiment_frame(40, seed=6).assign(label=["true", "false"] * 20).to_csv(tmp_path / "t.csv", index=False)
    _, schema = tokenize(tmp_path / "t.csv", tokenizer, tmp_path / "cache")
    assert schema.names == ["false", "true"]


def test_text_column_given_as_labels_fails_early(tokenizer, tmp_path):
    df = sentiment_frame(200, seed=4).assign(label=lambda d: d.text)
    with pytest.raises(DataError, match="looks like text, not labels"):
        tokenize(df, tokenizer, tmp_path)
    left = [p.name for p in (tmp_path / "tokens").iterdir() if not p.name.endswith(".lock")]  # the build lock stays
    assert not left, "a failed build leaves nothing in the cache"


def test_sorted_by_label_input_is_shuffled_globally(tiny_model_dir, tokenizer, tmp_path):
    # Sorted by label, as files often are: 4 labels in blocks of 400 rows.
    df = pd.concat([sentiment_frame(400, seed=i).assign(label=f"c{i}") for i in range(4)], ignore_index=True)
    data, _ = tokenize(df, tokenizer, tmp_path)
    trainer = bertfit.training.trainer.BertfitTrainer(
        model=AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=4),
        args=bertfit.training.trainer.training_arguments(
            bertfit.config.TrainConfig(batch_size=16), tmp_path, "fp32", 1600, False
        ),
        train_dataset=TokenizedRows(data),
        eval_dataset=TokenizedRows(data),
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    loader = trainer.get_train_dataloader()
    orders = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        batches = [batch["labels"].tolist() for batch in loader]
        assert sum(len(b) for b in batches) == 1600
        windows = [sum(batches[i : i + 2], []) for i in range(len(batches) - 1)]  # 32 rows each
        assert all(len(set(w)) > 1 for w in windows), "a run of batches holds one label"
        orders.append(sum(batches, []))
    assert orders[0] != orders[1] != orders[2], "every epoch needs a new order"


def test_epoch_order_is_a_seeded_length_grouped_permutation():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 200, size=5000)
    sampler = EpochSampler(lengths, batch_size=32, seed=11)
    first = sampler.order(0)
    assert sorted(first.tolist()) == list(range(5000))
    assert np.array_equal(first, EpochSampler(lengths, 32, seed=11).order(0)), "same seed and epoch, same order"
    assert not np.array_equal(first, sampler.order(1))
    sampler.set_epoch(1)
    assert list(sampler) == sampler.order(1).tolist()

    def padding(order: np.ndarray) -> int:
        batches = [lengths[order[i : i + 32]] for i in range(0, len(order), 32)]
        return sum(int(b.max()) * len(b) - int(b.sum()) for b in batches)

    plain = EpochSampler(lengths, 32, seed=11, group_by_length=False).order(0)
    assert padding(first) < padding(plain) / 5, "grouping by length must remove most padding"


def test_class_weights(tmp_path):
    schema = bertfit.labels.LabelSchema(["a", "b"])
    labels = np.array([0] * 90 + [1] * 10)
    weights = class_weights("auto", labels, schema)
    assert weights.tolist() == pytest.approx([100 / 180, 100 / 20])
    assert float(weights[torch.from_numpy(labels)].mean()) == pytest.approx(1.0), "rows weigh 1 on average"
    assert class_weights("none", labels, schema) is None
    (tmp_path / "w.yaml").write_text("a: 1\nb: 3.5\n")
    assert class_weights(str(tmp_path / "w.yaml"), labels, schema).tolist() == [1.0, 3.5]
    (tmp_path / "bad.json").write_text('{"a": 1}')
    with pytest.raises(bertfit.errors.ConfigError, match="no weight for 'b'"):
        class_weights(str(tmp_path / "bad.json"), labels, schema)


def test_class_weights_change_the_loss_of_an_imbalanced_batch_by_the_expected_factor():
    # Zero logits cost ln 2 per row under two classes, so the weighted loss is ln 2 times the mean weight of the
    # batch's rows: 4 of class a (100/180 each) and 2 of class b (100/20 each).
    schema = LabelSchema(["a", "b"])
    weights = class_weights("auto", np.array([0] * 90 + [1] * 10), schema)
    target = torch.tensor([0, 1, 1, 0, 0, 0])
    zero = {"logits": torch.zeros(6, 2)}
    plain, weighted = training_loss(schema)(zero, target), training_loss(schema, weights)(zero, target)
    assert float(plain) == pytest.approx(np.log(2), rel=1e-6)
    assert float(weighted / plain) == pytest.approx((4 * 100 / 180 + 2 * 100 / 20) / 6, rel=1e-6)  # 2.037

    # Any logits: each row's term times its class's weight, over the rows (not over the weights' sum).
    logits = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    per_row = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    loss = training_loss(schema, weights)({"logits": logits}, target)
    assert float(loss) == pytest.approx(float((weights[target] * per_row).sum() / 6), rel=1e-6)


@pytest.mark.parametrize("multi", [False, True], ids=["single-label", "multi-label"])
def test_the_loss_of_a_step_is_the_sum_of_its_batches_losses(multi):
    # What makes accumulation and DDP exact: each batch's loss is its sum over the step's label count (Trainer's
    # num_items_in_batch), so a step's batches add up to the loss of the whole step; a per-batch mean would not.
    gen = torch.Generator().manual_seed(1)
    names = ["a", "b", "c"]
    if multi:
        schema = LabelSchema(names, problem_type="multi_label_classification")
        target = (torch.rand(10, 3, generator=gen) < torch.tensor([0.2, 0.5, 0.7])).float()
        weights = torch.tensor([4.0, 1.0, 0.43])
    else:
        schema, target, weights = (
            LabelSchema(names),
            torch.tensor([0, 0, 0, 0, 0, 0, 0, 1, 1, 2]),
            torch.tensor([1.0, 3.0, 5.0]),
        )
    logits = torch.randn(10, 3, generator=gen)
    for loss_of in (training_loss(schema), training_loss(schema, weights)):
        whole = loss_of({"logits": logits}, target)
        items = torch.tensor(target.numel())
        halves = [loss_of({"logits": logits[s]}, target[s], items) for s in (slice(0, 7), slice(7, 10))]
        assert float(sum(halves)) == pytest.approx(float(whole), rel=1e-6)
        assert float(loss_of({"logits": logits[:7]}, target[:7])) != pytest.approx(float(halves[0]), rel=1e-3)


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("BERTFIT_CACHE", str(tmp_path / "x"))
    assert bertfit.data.cache.cache_root() == tmp_path / "x"
    assert bertfit.data.cache.cache_root(tmp_path / "y") == tmp_path / "y"
    monkeypatch.delenv("BERTFIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert bertfit.data.cache.cache_root() == tmp_path / "xdg" / "bertfit"
    assert os.environ.get("BERTFIT_CACHE") is None
