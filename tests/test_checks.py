from __future__ import annotations

import logging

import pandas as pd
import pytest

from bertfit.config import DataConfig
from bertfit.data.rows import join_text, load_labelled, usable_rows
from bertfit.errors import DataError


def test_empty_texts_and_missing_labels_are_dropped_and_counted(caplog):
    df = pd.DataFrame({"text": ["a b", "", None, "  ", "c", "d"], "label": ["x", "y", "x", "y", None, "y"]})
    with caplog.at_level(logging.WARNING, logger="bertfit"):
        data, schema = load_labelled(df, DataConfig(), role="train")
    assert data.texts == ["a b", "d"] and data.dropped == {"empty text": 3, "missing label": 1}
    assert "dropped 3 of 6 rows with empty text" in caplog.text
    assert "dropped 1 of 6 rows with missing label" in caplog.text
    assert schema.names == ["x", "y"]


def test_several_text_columns_are_joined_skipping_empty_parts():
    df = pd.DataFrame({"title": ["T1", None, ""], "body": ["b1", "b2", None]})
    assert join_text(df, ["title", "body"], "f").tolist() == ["T1 b1", "b2", None]


def test_only_one_class_is_an_error():
    with pytest.raises(DataError, match="only one class \\('x'\\)"):
        load_labelled(pd.DataFrame({"text": ["a", "b"], "label": ["x", "x"]}), DataConfig())


def test_no_rows_left_is_an_error():
    with pytest.raises(DataError, match="no rows left after dropping 2 with empty text"):
        load_labelled(pd.DataFrame({"text": ["", " "], "label": ["x", "y"]}), DataConfig())


def test_missing_text_column_suggests_the_option():
    df = pd.DataFrame({"tweet": ["a"], "label": ["x"]})
    with pytest.raises(DataError, match="no column 'text' \\(found: 'tweet', 'label'\\); pass --text-col tweet"):
        load_labelled(df, DataConfig(), role="emotion.csv")


@pytest.mark.parametrize("multi", [{"multi_label": True}, {"label_sep": "|"}])
def test_an_empty_label_cell_is_a_row_with_no_labels_for_multi_label_only(multi):
    labels = ["a|b", "", "  ", [], None, float("nan"), "b"]
    df = pd.DataFrame({"text": [f"t{i}" for i in range(len(labels))], "label": pd.Series(labels, dtype=object)})
    texts, kept, dropped = usable_rows(df, DataConfig(**multi), "f")
    assert texts.tolist() == ["t0", "t1", "t2", "t3", "t6"] and dropped == {"empty text": 0, "missing label": 2}
    texts, _, dropped = usable_rows(df.drop(index=3), DataConfig(), "f")  # one label per row: '' has none
    assert texts.tolist() == ["t0", "t6"] and dropped == {"empty text": 0, "missing label": 4}
