"""bertfit.data.io: every format round-trips, CSV quirks are read right, bad files give one-line DataErrors."""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertfit.data.io import read_table, require_columns, table_format
from bertfit.data.write import write_table
from bertfit.errors import DataError

FORMATS = ["csv", "tsv", "jsonl", "parquet", "h5", "xlsx", "csv.gz", "jsonl.gz"]
TEXT_FORMATS = ("csv", "tsv", "csv.gz")  # no types: every value comes back as the text that was written


def mixed_frame() -> pd.DataFrame:
    """Strings (with null look-alikes 'NA' and 'None'), ints, floats and nulls, in a non-sorted order."""
    return pd.DataFrame(
        {
            "id": [30, 10, 20, 40, 50],
            "text": ["café ☕ — ok", "NA", None, "None", 'a, "quoted" text'],
            "score": [1.5, np.nan, -2.25, 1e-3, 7.0],
            "count": [0, -3, 12, 7, 1_000_000],
        }
    )


def assert_same_values(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same columns and rows in the same order; nulls where nulls were; equal values elsewhere."""
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    for col in expected.columns:
        want, have = expected[col].tolist(), got[col].tolist()
        assert [pd.isna(v) for v in have] == [pd.isna(v) for v in want], f"nulls in column {col}: {have}"
        assert [v for v in have if not pd.isna(v)] == [v for v in want if not pd.isna(v)], f"{col}: {have}"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".partial"))


@pytest.mark.parametrize("ext", FORMATS)
def test_round_trip_keeps_values_nulls_and_order(tmp_path: Path, ext: str) -> None:
    df = mixed_frame()
    path = tmp_path / f"table.{ext}"
    write_table(df, path)
    got = read_table(path)
    if ext in TEXT_FORMATS:  # the text of each value, "" for a null; read back exactly as written
        assert got.to_dict("list") == {
            "id": ["30", "10", "20", "40", "50"],
            "text": ["café ☕ — ok", "NA", "", "None", 'a, "quoted" text'],
            "score": ["1.5", "", "-2.25", "0.001", "7.0"],
            "count": ["0", "-3", "12", "7", "1000000"],
        }
    else:
        assert_same_values(got, df)
    if ext in ("parquet", "h5"):
        assert pd.api.types.is_integer_dtype(got["id"]) and pd.api.types.is_integer_dtype(got["count"])
        assert pd.api.types.is_float_dtype(got["score"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name], "only the target file may remain"


@pytest.mark.parametrize("ext", FORMATS)
def test_read_selected_columns_in_asked_order(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"table.{ext}"
    write_table(mixed_frame(), path)
    got = read_table(path, columns=["score", "id"])
    assert list(got.columns) == ["score", "id"]
    ids = [30, 10, 20, 40, 50]
    assert got["id"].tolist() == ([str(i) for i in ids] if ext in TEXT_FORMATS else ids)


def test_compressed_csv_is_really_gzip(tmp_path: Path) -> None:
    path = tmp_path / "table.csv.gz"
    write_table(mixed_frame(), path)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        assert fh.readline().strip() == "id,text,score,count"


def test_read_columns_missing_names_file_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("tweet,label\nhi,pos\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_table(path, columns=["text"])
    msg = str(info.value)
    assert str(path) in msg and "'text'" in msg and "'tweet'" in msg and "'label'" in msg


def test_require_columns_suggests_the_option(tmp_path: Path) -> None:
    df = pd.DataFrame({"id": [1, 2], "review": ["good", "bad"]})
    expected = r"in\.csv: no column 'text' \(found: 'id', 'review'\); pass --text-col review$"
    with pytest.raises(DataError, match=expected):
        require_columns(df, ["text"], "in.csv", "--text-col")


# CSV robustness


def test_csv_with_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\nhello,pos\n")
    df = read_table(path)
    assert list(df.columns) == ["text", "label"]
    assert df.values.tolist() == [["hello", "pos"]]


def test_csv_with_crlf_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "crlf.csv"
    path.write_bytes(b"text,label\r\nhello there,pos\r\nbye,neg\r\n")
    df = read_table(path)
    assert list(df.columns) == ["text", "label"]
    assert df.values.tolist() == [["hello there", "pos"], ["bye", "neg"]]


def test_csv_quoted_field_with_newline_and_comma(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    path.write_bytes(b'id,text,label\r\n1,"hello, world\nsecond line",pos\n2,"say ""hi""",neg\n')
    df = read_table(path)
    assert df["text"].tolist() == ["hello, world\nsecond line", 'say "hi"']
    assert df["label"].tolist() == ["pos", "neg"]
    assert df["id"].tolist() == ["1", "2"]


def test_csv_keeps_na_like_strings(tmp_path: Path) -> None:
    path = tmp_path / "na.csv"
    path.write_text("text,label\nNA,null\nNone,N/A\n,x\n", encoding="utf-8")
    df = read_table(path)
    assert df["text"].tolist()[:2] == ["NA", "None"]
    assert df["label"].tolist() == ["null", "N/A", "x"]
    assert df["text"].iloc[2] == ""  # an empty field is the empty text; rows code treats it as missing


def test_header_only_csv_reads_as_empty_table(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("text,label\n", encoding="utf-8")
    df = read_table(path)
    assert list(df.columns) == ["text", "label"] and len(df) == 0


# Bad files


@pytest.mark.parametrize(
    ("name", "content", "line", "byte"),
    [
        ("latin1.csv", b"text,label\nhello,pos\ncaf\xe9 au lait,neg\n", 3, "0xe9"),
        ("latin1.tsv", b"text\tlabel\nhello\tpos\nok\tneg\nna\xefve\tneg\n", 4, "0xef"),
        ("latin1.jsonl", b'{"text": "hello"}\n{"text": "caf\xe9"}\n', 2, "0xe9"),
    ],
)
def test_non_utf8_names_file_and_line(tmp_path: Path, name: str, content: bytes, line: int, byte: str):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_table(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:")
    assert f"line {line} " in msg and byte in msg
    assert "UTF-8" in msg and "\n" not in msg


def test_non_utf8_deep_in_a_large_csv_names_the_right_line(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"text,label\n" + b"hello there,pos\n" * 50_000 + b"caf\xe9,neg\n")
    with pytest.raises(DataError, match=r"line 50002 is not valid UTF-8"):
        read_table(path)


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "notes.docx"
    path.write_bytes(b"PK\x03\x04 not a table")
    with pytest.raises(DataError) as info:
        read_table(path)
    msg = str(info.value)
    assert str(path) in msg and ".docx" in msg and ".csv" in msg and ".parquet" in msg


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.CSV", "csv"),
        ("a.tab", "tsv"),
        ("a.ndjson", "jsonl"),
        ("a.pq", "parquet"),
        ("a.hdf5", "hdf5"),
        ("a.tsv.gz", "tsv"),
        ("a.jsonl.zst", "jsonl"),
        ("a.v2.parquet", "parquet"),
    ],
)
def test_table_format_by_extension(name: str, fmt: str) -> None:
    assert table_format(name) == fmt


@pytest.mark.parametrize("name", ["data", "data.gz", "data.txt", "data.xls.gz"])
def test_table_format_rejects_unknown(name: str) -> None:
    with pytest.raises(DataError, match=rf"^{name}: unknown file type"):
        table_format(name)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"
    with pytest.raises(DataError) as info:
        read_table(path)
    assert str(path) in str(info.value) and "not found" in str(info.value)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    path = tmp_path / "folder.csv"
    path.mkdir()
    with pytest.raises(DataError, match="is a folder"):
        read_table(path)


@pytest.mark.parametrize("ext", ["csv", "tsv", "jsonl", "parquet", "h5", "xlsx"])
def test_empty_file(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"empty.{ext}"
    path.touch()
    with pytest.raises(DataError) as info:
        read_table(path)
    assert str(path) in str(info.value) and "empty" in str(info.value)


def test_blank_lines_only_csv(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"blank\.csv: file has no header row"):
        read_table(path)


@pytest.mark.parametrize("ext", ["parquet", "h5", "xlsx", "jsonl"])
def test_corrupt_file_is_a_data_error(tmp_path: Path, ext: str) -> None:
    """Bytes that do not match the extension: a one-line DataError naming the file, no raw library error."""
    path = tmp_path / f"corrupt.{ext}"
    path.write_bytes(b'this is not a real table file {"x": \n')
    with pytest.raises(DataError) as info:
        read_table(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:") and "\n" not in msg


# Writing


@pytest.mark.parametrize("ext", FORMATS)
def test_write_replaces_existing_file_and_leaves_no_temp(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"out.{ext}"
    write_table(pd.DataFrame({"a": [1, 2, 3]}), path)
    write_table(pd.DataFrame({"a": [9]}), path)
    assert read_table(path)["a"].tolist() == (["9"] if ext in TEXT_FORMATS else [9])
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_write_into_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "out.csv"
    with pytest.raises(DataError) as info:
        write_table(pd.DataFrame({"a": [1]}), path)
    assert str(path.parent) in str(info.value) and "does not exist" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_write_unknown_extension_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"out\.docx: unknown file type"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "out.docx")
    assert list(tmp_path.iterdir()) == []


def _disk_fills_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Parquet writer writes half a file, then fails."""

    def broken(table: pa.Table, where: str, **kwargs: object) -> None:
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", broken)


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.parquet"
    write_table(pd.DataFrame({"a": [1, 2]}), path)
    before = path.read_bytes()
    _disk_fills_up(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        write_table(pd.DataFrame({"a": [3]}), path)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_failed_write_of_new_file_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _disk_fills_up(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "new.parquet")
    assert list(tmp_path.iterdir()) == []


# HDF5 with several tables


def _hdf(path: Path, tables: dict[str, pd.DataFrame]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pd.HDFStore(path, mode="w") as store:
            for key, df in tables.items():
                store.put(key, df, format="table")  # text stored as text (the default 'fixed' pickles it)


def test_hdf5_several_tables_reads_the_one_named_data(tmp_path: Path) -> None:
    path = tmp_path / "many.h5"
    _hdf(path, {"other": pd.DataFrame({"x": ["no"]}), "data": pd.DataFrame({"text": ["yes", "also"]})})
    df = read_table(path)
    assert df["text"].tolist() == ["yes", "also"]


def test_hdf5_several_tables_without_data_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "many.h5"
    _hdf(path, {"train": pd.DataFrame({"text": ["a"]}), "test": pd.DataFrame({"text": ["b"]})})
    with pytest.raises(DataError) as info:
        read_table(path)
    msg = str(info.value)
    assert str(path) in msg and "/train" in msg and "/test" in msg and "'data'" in msg


def test_hdf5_single_table_with_any_key(tmp_path: Path) -> None:
    path = tmp_path / "one.h5"
    _hdf(path, {"nums": pd.DataFrame({"n": [3, 1, 2]})})
    assert read_table(path)["n"].tolist() == [3, 1, 2]


def test_hdf5_without_tables(tmp_path: Path) -> None:
    path = tmp_path / "none.h5"
    with pd.HDFStore(path, mode="w"):
        pass
    with pytest.raises(DataError, match=r"none\.h5: HDF5 file holds no table"):
        read_table(path)


def test_outputs_get_the_usual_permissions_not_private_temp_ones(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        write_table(pd.DataFrame({"text": ["a"]}), tmp_path / "out.csv")
    finally:
        os.umask(umask)
    assert (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o644
