"""Every value of the user's file comes back as it was given, in every format pair, over several windows and parts,
with the local and the Ray engine (tests/inputs/shapes.*: 19-digit ids with gaps, '1.50', 'TRUE', '+3', '007',
a column of numbers in some rows and words in others)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bertfit
from bertfit.data.jsonlines import raw_members

INPUTS = Path(__file__).resolve().parent / "inputs"
COLUMNS = ["id", "text", "amount", "flag", "code", "mixed"]
WINDOW = 7  # 40 rows: six windows, six parts


def csv_rows(path: Path, sep: str = ",", quoting: int = csv.QUOTE_MINIMAL) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh, delimiter=sep, quoting=quoting))


def tsv_rows(path: Path) -> list[list[str]]:
    """Split on tabs, as the BERT reference scripts read TSV: no quoting, one row per line."""
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def jsonl_members(path: Path) -> list[dict[str, str]]:
    """Each line's members as their raw JSON text."""
    return [{k: raw for k, (_, raw) in raw_members(line).items()} for line in path.read_text("utf-8").splitlines()]


def assert_prefix_columns(out_rows: list[list[str]], in_rows: list[list[str]]) -> None:
    """Same header start and the same fields, row for row, in order; predictions come after."""
    assert len(out_rows) == len(in_rows) == 41
    assert out_rows[0][: len(in_rows[0])] == in_rows[0] and out_rows[0][len(in_rows[0])] == "pred_label"
    for got, want in zip(out_rows[1:], in_rows[1:]):
        assert got[: len(want)] == want


def predict(model: Path, inp: Path, out: Path, engine: str) -> None:
    if engine == "local":
        bertfit.predict_file(model, inp, out, window=WINDOW, dtype="fp32")
    else:
        from bertfit.prediction.ray_engine import predict_with_ray

        predict_with_ray(model, inp, out, dtype="fp32", num_workers=1, cpus_per_worker=1, window=WINDOW)


def parquet_input(tmp_path: Path) -> tuple[Path, pa.Table]:
    """Typed columns, with gaps: 19-digit int64 ids, float64, bool, timestamps and text."""
    table = pa.table(
        {
            "id": pa.array([1_234_567_890_123_456_789 + i if i % 6 else None for i in range(40)], pa.int64()),
            "text": [f"good film {i}" if i % 10 else None for i in range(40)],
            "score": pa.array([0.1 * i if i % 5 else None for i in range(40)], pa.float64()),
            "flag": pa.array([bool(i % 2) if i % 7 else None for i in range(40)], pa.bool_()),
            "count": pa.array([i if i % 8 else None for i in range(40)], pa.int32()),
        }
    )
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    return path, table


def expected_text(value: object) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


ENGINES = ["local", pytest.param("ray", marks=pytest.mark.slow)]  # slow: a Ray cluster, seconds a case


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """The engine's name; for "ray", the module's Ray cluster (conftest) is started first."""
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    return request.param


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_csv_to_csv_gives_every_field_back(tiny_trained, tmp_path, engine):
    predict(tiny_trained, INPUTS / "shapes.csv", tmp_path / "out.csv", engine)
    assert_prefix_columns(csv_rows(tmp_path / "out.csv"), csv_rows(INPUTS / "shapes.csv"))


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_tsv_to_tsv_gives_every_line_back_unquoted(tiny_trained, tmp_path, engine):
    predict(tiny_trained, INPUTS / "shapes.tsv", tmp_path / "out.tsv", engine)
    out = tsv_rows(tmp_path / "out.tsv")
    assert_prefix_columns(out, tsv_rows(INPUTS / "shapes.tsv"))
    assert any(row[1].startswith('"') for row in out[1:]), "texts that start with a quote keep it"


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_csv_to_parquet_gives_the_texts_as_strings(tiny_trained, tmp_path, engine):
    predict(tiny_trained, INPUTS / "shapes.csv", tmp_path / "out.parquet", engine)
    table = pq.read_table(tmp_path / "out.parquet")
    rows = csv_rows(INPUTS / "shapes.csv")
    for i, name in enumerate(COLUMNS):
        assert pa.types.is_string(table.schema.field(name).type) or pa.types.is_large_string(
            table.schema.field(name).type
        )
        assert table.column(name).to_pylist() == [r[i] for r in rows[1:]]


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_parquet_to_csv_keeps_ids_exact_and_gaps_empty(tiny_trained, tmp_path, engine):
    path, table = parquet_input(tmp_path)
    predict(tiny_trained, path, tmp_path / "out.csv", engine)
    rows = csv_rows(tmp_path / "out.csv")
    assert rows[0][:5] == table.column_names
    for i, name in enumerate(table.column_names):
        assert [r[i] for r in rows[1:]] == [expected_text(v) for v in table.column(name).to_pylist()], name
    assert rows[2][0] == "1234567890123456790"  # not 1.2345678901234568e+18


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_jsonl_to_jsonl_gives_every_value_back_as_json(tiny_trained, tmp_path, engine):
    predict(tiny_trained, INPUTS / "shapes.jsonl", tmp_path / "out.jsonl", engine)
    got, want = jsonl_members(tmp_path / "out.jsonl"), jsonl_members(INPUTS / "shapes.jsonl")
    assert len(got) == len(want) == 40
    for out, inp in zip(got, want):
        assert {k: out[k] for k in inp} == inp  # 1.50 stays 1.50; 9300000000000000003 stays exact
        assert set(out) - set(inp) == {"pred_label", "pred_score"}  # a key a line lacks stays absent
    assert sum("amount" not in line for line in want) > 0


def test_jsonl_to_csv_gives_each_value_its_text(tiny_trained, tmp_path):
    bertfit.predict_file(tiny_trained, INPUTS / "shapes.jsonl", tmp_path / "out.csv", window=WINDOW)
    rows = csv_rows(tmp_path / "out.csv")
    header = rows[0]
    first = dict(zip(header, rows[1]))
    assert first["id"] == "1234567890123456789" and first["amount"] == "1.50" and first["flag"] == "true"
    assert first["code"] == '{"nested": [1, 2.50, "\\u00e9"]}'  # an object: its JSON text
    third = dict(zip(header, rows[3]))
    assert third["amount"] == "+3" and third["mixed"] == "None"  # strings: their contents


def test_a_mixed_column_keeps_one_type_over_windows(tiny_trained, tmp_path):
    """Numbers in one window and words in the next: the output column is text throughout, never re-typed."""
    bertfit.predict_file(tiny_trained, INPUTS / "shapes.csv", tmp_path / "out.parquet", window=3)
    mixed = pq.read_table(tmp_path / "out.parquet").column("mixed").to_pylist()
    assert mixed == [r[5] for r in csv_rows(INPUTS / "shapes.csv")[1:]]


def test_output_text_is_byte_identical_for_plain_csv(tiny_trained, tmp_path):
    """A CSV written with minimal quoting comes back with the same bytes before the prediction columns."""
    bertfit.predict_file(tiny_trained, INPUTS / "shapes.csv", tmp_path / "out.csv", window=WINDOW)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(r[:6] for r in csv_rows(tmp_path / "out.csv"))
    assert out.getvalue() == (INPUTS / "shapes.csv").read_text(encoding="utf-8")
