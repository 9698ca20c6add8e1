"""Reading files as their users wrote them: headerless CSV/TSV (--columns), TSV without quoting, quotes that would
merge lines, other encodings, byte-order marks, pickled HDF5 refused, nothing skipped without a word."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import pandas as pd
import pytest
from conftest import sentiment_frame
from typer.testing import CliRunner

import bertfit
from bertfit.cli import app
from bertfit.data import io as data_io
from bertfit.data.io import ReadOptions, data_files, iter_frames, read_table
from bertfit.errors import ConfigError, DataError

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("restore_cli_state")


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


# TSV as most tools write it: no quoting, one row per line


def sst_like_tsv(path: Path, lines: int = 40) -> list[str]:
    """label<TAB>text, CRLF, some texts starting (and some ending) with a quote that closes nowhere."""
    texts = []
    for i in range(lines):
        text = f"good film number {i}"
        if i % 5 == 1:
            text = f'"{text} and more'  # an opening quote that never closes
        if i % 7 == 3:
            text = f'"quoted" {text}'
        texts.append(text)
    body = "".join(f"{'positive' if i % 2 else 'negative'}\t{t}\r\n" for i, t in enumerate(texts))
    path.write_bytes(("label\ttext\r\n" + body).encode("utf-8"))
    return texts


def test_tsv_with_texts_that_start_with_a_quote_keeps_every_line(tmp_path: Path) -> None:
    texts = sst_like_tsv(tmp_path / "train.tsv")
    df = read_table(tmp_path / "train.tsv")
    assert len(df) == 40 and df["text"].tolist() == texts  # quotes kept, nothing merged, no '\r'


def test_tsv_read_with_quoting_stops_at_the_merged_line(tmp_path: Path) -> None:
    sst_like_tsv(tmp_path / "train.tsv")
    with pytest.raises(DataError, match=r"train\.tsv: line 3: .*--quoting none"):
        read_table(tmp_path / "train.tsv", opts=ReadOptions(quoting="csv"))


def test_quoted_tsv_is_detected_and_read_with_quotes(tmp_path: Path) -> None:
    """A TSV written by pandas or Excel: texts holding a quote are quoted, their quotes doubled."""
    df = pd.DataFrame({"text": ['she said "hi"', "plain text", 'a "b" c'], "label": ["x", "y", "x"]})
    df.to_csv(tmp_path / "quoted.tsv", sep="\t", index=False)
    assert read_table(tmp_path / "quoted.tsv")["text"].tolist() == df["text"].tolist()


def test_auto_quoting_refuses_a_quoted_tab_and_names_both_fixes(tmp_path: Path) -> None:
    (tmp_path / "t.tsv").write_text('text\tlabel\n"a\tb"\tx\n"c ""d"""\ty\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: a quoted field holds a tab .*--quoting none.*--quoting csv"):
        read_table(tmp_path / "t.tsv")
    got = read_table(tmp_path / "t.tsv", opts=ReadOptions(quoting="csv"))
    assert got["text"].tolist() == ["a\tb", 'c "d"']


def test_csv_with_a_broken_quote_names_its_line(tmp_path: Path) -> None:
    lines = ["text,label", "fine,a", "also fine,b", '"broken it never closes,a', "next,b", "last,a"]
    (tmp_path / "b.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"b\.csv: line 4: a quote .* never closes"):
        read_table(tmp_path / "b.csv")
    # as plain characters the quote is part of the text, and every line is a row
    got = read_table(tmp_path / "b.csv", opts=ReadOptions(quoting="none"))
    assert len(got) == 5 and got["text"].tolist()[2] == '"broken it never closes'


def test_a_short_row_is_an_error_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / "s.tsv").write_text("label\ttext\npos\tfine\nneg\tsplit by a\nline break\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 4 has 1 field, the header has 2; .*--quoting csv"):
        read_table(tmp_path / "s.tsv")


# Headerless files


def headerless(tmp_path: Path, name: str, sep: str = ",", n: int = 120, seed: int = 0) -> pd.DataFrame:
    df = sentiment_frame(n, seed)
    df["label"] = df["label"].map({"negative": "1", "positive": "2"})
    df[["label", "text"]].to_csv(tmp_path / name, sep=sep, header=False, index=False)
    return df


def test_headerless_without_columns_says_to_pass_columns(tmp_path: Path, tiny_model_dir: Path) -> None:
    headerless(tmp_path, "train.csv")
    result = invoke("train", tmp_path / "train.csv", "-o", tmp_path / "m", "--model", tiny_model_dir)
    assert result.exit_code == 2
    assert "looks like data" in result.stderr and "--columns label,text" in result.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("sep,ext", [(",", "csv"), ("\t", "tsv")])
def test_headerless_files_with_columns_through_every_command(
    tmp_path: Path, tiny_model_dir: Path, sep: str, ext: str
) -> None:
    headerless(tmp_path, f"train.{ext}", sep, 320, seed=1)
    test = headerless(tmp_path, f"test.{ext}", sep, 40, seed=2)
    cols, label_map = ["--columns", "label,text"], ["--label-map", "1=negative,2=positive"]

    result = invoke("check", tmp_path / f"train.{ext}", "--test", tmp_path / f"test.{ext}", *cols, *label_map,
                    "--json")  # fmt: skip
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    assert report["stats"]["splits"]["train"]["rows"] == 320

    tiny = ["--epochs", "4", "--lr", "3e-3", "--batch-size", "16", "--warmup", "0", "--no-check", "--json"]
    train = ["train", tmp_path / f"train.{ext}", "-o", tmp_path / "m", "--model", tiny_model_dir, *cols, *label_map]
    result = invoke(*train, *tiny)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["labels"] == ["negative", "positive"]

    result = invoke("evaluate", tmp_path / "m", tmp_path / f"test.{ext}", *cols, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 40 and json.loads(result.stdout)["accuracy"] >= 0.8

    test[["text"]].to_csv(tmp_path / f"new.{ext}", sep=sep, header=False, index=False)
    result = invoke("predict", tmp_path / "m", tmp_path / f"new.{ext}", tmp_path / f"out.{ext}", "--columns", "text")
    assert result.exit_code == 0, result.output
    out = read_table(tmp_path / f"out.{ext}")
    assert list(out.columns) == ["text", "pred_label", "pred_score"]
    assert out["text"].tolist() == test["text"].tolist()  # the first row is data, and it is predicted


def test_columns_in_a_config_file(tmp_path: Path) -> None:
    headerless(tmp_path, "train.csv", n=30)
    (tmp_path / "run.yaml").write_text("data: {columns: [label, text], quoting: csv}\n", encoding="utf-8")
    result = invoke("check", tmp_path / "train.csv", "--config", tmp_path / "run.yaml", "--json")
    assert result.exit_code in (0, 1), result.output
    assert json.loads(result.stdout)["stats"]["splits"]["train"]["rows"] == 30


def test_columns_must_match_the_fields(tmp_path: Path) -> None:
    headerless(tmp_path, "train.csv", n=10)
    with pytest.raises(DataError, match=r"line 1 has 2 fields, --columns names 3"):
        read_table(tmp_path / "train.csv", opts=ReadOptions(columns=("a", "b", "c")))
    with pytest.raises(ConfigError, match="--columns must name each column once"):
        ReadOptions(columns=("a", "a"))


# Labels are typed once, from all of the data


def test_boolean_looking_labels_over_several_windows_are_two_classes(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows whose labels are all 'true'/'false' once became booleans ('True') while others stayed text."""
    df = sentiment_frame(120, seed=3)
    df["label"] = df["label"].map({"positive": "true", "negative": "false"})
    df.loc[df.index % 40 == 0, "label"] = "maybe"  # one window in three also has a third label
    df.to_csv(tmp_path / "train.csv", index=False)
    monkeypatch.setattr(data_io, "WINDOW_ROWS", 13)
    result = bertfit.train(tmp_path / "train.csv", tmp_path / "m", model=str(tiny_model_dir), epochs=1,
                           check=False, progress=False)  # fmt: skip
    assert result.labels == ["false", "maybe", "true"]


# Encodings and byte-order marks


def test_jsonl_with_a_byte_order_mark(tmp_path: Path) -> None:
    rows = [{"text": "hello there", "label": "a"}, {"text": "bye", "label": "b"}]
    data = "\ufeff" + "".join(json.dumps(r) + "\r\n" for r in rows)
    (tmp_path / "bom.jsonl").write_bytes(data.encode("utf-8"))
    assert read_table(tmp_path / "bom.jsonl").to_dict("records") == rows


def test_another_encoding_is_named_and_read_with_encoding(tmp_path: Path) -> None:
    (tmp_path / "w.csv").write_bytes("text,label\ncafé crème brûlée,a\nnaïve façade,b\n".encode("cp1252"))
    with pytest.raises(DataError, match=r"w\.csv: line 2 is not valid UTF-8 .*pass --encoding cp1252"):
        read_table(tmp_path / "w.csv")
    got = read_table(tmp_path / "w.csv", opts=ReadOptions(encoding="cp1252"))
    assert got["text"].tolist() == ["café crème brûlée", "naïve façade"]


# HDF5: no pickle unless asked


class Payload:
    """Unpickling this touches a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_hdf5_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    df = pd.DataFrame({"text": pd.Series(["a good film", Payload(marker)], dtype=object), "label": ["x", "y"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df.to_hdf(tmp_path / "evil.h5", key="data", mode="w")  # pandas' default "fixed" format pickles objects
    assert not marker.exists()
    with pytest.raises(DataError, match=r"evil\.h5: column data .* pickles .*pass --allow-pickle"):
        read_table(tmp_path / "evil.h5")
    result = invoke("check", tmp_path / "evil.h5")
    assert result.exit_code == 2 and "--allow-pickle" in result.stderr
    assert not marker.exists(), "reading the file must not unpickle anything"


def test_a_pickled_attribute_is_refused_before_pytables_opens_the_file(tmp_path: Path) -> None:
    import tables

    marker = tmp_path / "code-ran"
    pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}).to_hdf(tmp_path / "t.h5", key="data", format="table")
    with tables.open_file(tmp_path / "t.h5", "a") as h5:
        h5.root.data.table.attrs.extra = Payload(marker)
    assert not marker.exists()
    with pytest.raises(DataError, match="is a pickle that imports or calls code"):
        read_table(tmp_path / "t.h5")
    assert not marker.exists()


def test_table_format_hdf5_reads_and_pickled_reads_with_allow_pickle(tmp_path: Path) -> None:
    df = pd.DataFrame({"text": ["a good film", "bad"], "label": ["x", "y"]})
    df.to_hdf(tmp_path / "table.h5", key="data", format="table")
    assert read_table(tmp_path / "table.h5").to_dict("list") == df.to_dict("list")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df.to_hdf(tmp_path / "fixed.h5", key="data")
    assert read_table(tmp_path / "fixed.h5", opts=ReadOptions(allow_pickle=True)).to_dict("list") == df.to_dict("list")


def test_hdf5_outputs_are_written_without_pickle(tiny_trained: Path, tmp_path: Path) -> None:
    pd.DataFrame({"id": ["007", "8"], "text": ["good film", "bad film"]}).to_csv(tmp_path / "in.csv", index=False)
    bertfit.predict_file(tiny_trained, tmp_path / "in.csv", tmp_path / "out.h5")
    out = read_table(tmp_path / "out.h5")  # refused if anything in it were pickled
    assert out["id"].tolist() == ["007", "8"] and out["pred_label"].notna().all()


# Nothing skipped without a word


def test_files_skipped_in_a_shard_folder_are_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a.csv").write_text("text\nhi\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not data", encoding="utf-8")
    (tmp_path / "b.csv.bak").write_text("text\nold\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bertfit"):
        assert [p.name for p in data_files(tmp_path)] == ["a.csv"]
    assert "skipped 2 files" in caplog.text and "notes.txt" in caplog.text and "b.csv.bak" in caplog.text


def test_unread_excel_sheets_are_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("openpyxl")
    with pd.ExcelWriter(tmp_path / "book.xlsx") as writer:
        pd.DataFrame({"text": ["good"], "id": [12345678901]}).to_excel(writer, sheet_name="reviews", index=False)
        pd.DataFrame({"text": ["bad"]}).to_excel(writer, sheet_name="more", index=False)
    with caplog.at_level(logging.WARNING, logger="bertfit"):
        df = read_table(tmp_path / "book.xlsx")
    assert df.to_dict("list") == {"text": ["good"], "id": [12345678901]}
    assert "first sheet 'reviews' only" in caplog.text and "'more'" in caplog.text


def test_windows_of_a_jsonl_file_keep_raw_values_for_passthrough(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"id": 1.50, "text": "x"}\n{"text": "y", "extra": [1, 2]}\n', "utf-8")
    frames = list(iter_frames(tmp_path / "a.jsonl", 1, ["text"], passthrough=True))
    records = [f.to_dict("records") for f in frames]
    assert records == [[{"id": "1.50", "text": "x"}], [{"id": None, "text": "y", "extra": "[1, 2]"}]]
    assert [f.attrs["bertfit_raw_json"] for f in frames] == [["id"], ["id", "extra"]]
    assert os.path.getsize(tmp_path / "a.jsonl") > 0


def test_explain_reads_a_headerless_input_with_columns(tiny_trained: Path, tmp_path: Path) -> None:
    pytest.importorskip("captum")
    (tmp_path / "in.tsv").write_text("2\tgreat fun film\n1\tawful boring plot\n", encoding="utf-8")
    args = ["explain", tiny_trained, "--input", tmp_path / "in.tsv", "--columns", "label,text", "--steps", "8"]
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    explained = json.loads(result.stdout)
    assert [" ".join(e["words"]) for e in explained] == ["great fun film", "awful boring plot"]


# The fast reader (pyarrow) hands over to the careful one (csv module) mid-file; windows stay whole


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    from bertfit.data import textfiles

    monkeypatch.setattr(textfiles, "ARROW_BLOCK", 256)  # a few rows per block, so the hand-over is mid-file


def test_a_line_break_late_in_the_file_keeps_every_value_and_window(tmp_path: Path, small_blocks: None) -> None:
    rows = [[str(10**18 + i), f"text number {i}", f"{i}.50"] for i in range(60)]
    rows[41][1] = "a text with\na line break"
    lines = ["id,text,amount"] + [",".join(f'"{v}"' if "\n" in v else v for v in r) for r in rows]
    (tmp_path / "late.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    frames = list(iter_frames(tmp_path / "late.csv", 7))
    assert [len(f) for f in frames] == [7] * 8 + [4]
    assert pd.concat(frames, ignore_index=True).values.tolist() == rows


def test_a_bad_line_late_in_the_file_is_named(tmp_path: Path, small_blocks: None) -> None:
    lines = ["label\ttext"] + [f"pos\tgood film {i}" for i in range(50)]
    lines[44] = "neg\tthree\tfields"
    (tmp_path / "late.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"late\.tsv: line 45 has 3 fields, the header has 2"):
        list(iter_frames(tmp_path / "late.tsv", 5))
    (tmp_path / "late.csv").write_bytes(
        b"text,label\n" + b"".join(b"ok %d,a\n" % i for i in range(40)) + b"bad \xff,b\n"
    )
    with pytest.raises(DataError, match=r"late\.csv: line 42 is not valid UTF-8"):
        list(iter_frames(tmp_path / "late.csv", 5))
