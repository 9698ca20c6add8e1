from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from bertfit.errors import DataError
from bertfit.labels import LabelSchema


def test_integer_labels_sort_numerically_and_encode():
    labels = pd.Series([10, 2, 1, 2])
    schema = LabelSchema.from_labels(labels)
    assert schema.names == ["1", "2", "10"]
    assert schema.encode(labels, "f", "label").tolist() == [2, 1, 0, 1]


def test_whole_number_floats_read_as_integers():
    schema = LabelSchema.from_labels(pd.Series([1.0, 2.0]))
    assert schema.names == ["1", "2"]


def test_label_map_order_and_unmapped_label():
    schema = LabelSchema.from_labels(pd.Series([2, 1]), {"1": "negative", "2": "positive"})
    assert schema.names == ["negative", "positive"]
    assert schema.encode(pd.Series([1, 2, 2]), "f", "y").tolist() == [0, 1, 1]
    with pytest.raises(DataError, match="leaves label '3' of column 'y' unmapped .1 rows.; add '3=NAME'"):
        schema.encode(pd.Series([1, 3]), "f", "y")


def test_unseen_label_names_file_column_and_known_labels():
    schema = LabelSchema(["joy", "sadness"])
    with pytest.raises(DataError, match=r"val.csv: column 'label' has labels .* 'anger' \(2 rows\); known labels: joy"):
        schema.encode(pd.Series(["joy", "anger", "anger"]), "val.csv", "label")


def test_round_trip_through_dict():
    schema = LabelSchema(["a", "b"], raw_map={"0": "a", "1": "b"})
    assert LabelSchema.from_dict(schema.to_dict()) == schema
    assert schema.id2label == {0: "a", 1: "b"} and schema.label2id["b"] == 1
    assert np.array_equal(schema.encode(pd.Series(["0", "a"]), "f", "l"), [0, 0])


@pytest.mark.parametrize(
    ("values", "names"),
    [
        (["10", "2", "1", "2"], ["1", "2", "10"]),  # integer strings (CSV, JSON strings): in number order
        (["1", "-1", "0"], ["-1", "0", "1"]),
        (["1", "01", "2"], ["01", "1", "2"]),  # "01" and "1" stay two labels
        (["10", "2", "x"], ["10", "2", "x"]),  # one label is not an integer: string order for all
        ([2.5, 10.0, 1.0], ["1", "10", "2.5"]),  # numbers that are not all whole: string order
        (["true", "false", "true"], ["false", "true"]),  # never typed into booleans ('True')
    ],
)
def test_labels_are_typed_once_from_all_their_strings(values, names):
    assert LabelSchema.from_labels(pd.Series(values, dtype=object)).names == names


@pytest.mark.parametrize("build", ["from_labels", "training cache"])
def test_label_map_classes_are_the_mapped_names_that_occur(build, tiny_model_dir, tmp_path, caplog):
    label_map = {"1": "negative", "2": "positive", "3": "neutral"}
    labels = pd.Series(["2", "1", "2"] * 10, dtype=object)
    with caplog.at_level(logging.WARNING, logger="bertfit"):
        if build == "from_labels":
            schema = LabelSchema.from_labels(labels, label_map, "train.csv", "stars")
        else:
            from transformers import AutoTokenizer

            from bertfit.config import DataConfig
            from bertfit.data.cache import tokenize_labelled

            frame = pd.DataFrame({"text": ["good film"] * len(labels), "stars": labels})
            cfg = DataConfig(label_col="stars", label_map=label_map)
            tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
            _, schema = tokenize_labelled(frame, cfg, tokenizer, 16, tmp_path, role="train.csv")
    assert schema.names == ["negative", "positive"]  # map order; 'neutral' would be a class no row has
    assert "train.csv: --label-map entry '3=neutral' matches no label in column 'stars'; ignored" in caplog.text
    assert "'1=negative'" not in caplog.text and "'2=positive'" not in caplog.text
