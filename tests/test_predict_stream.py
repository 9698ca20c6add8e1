"""Streaming, resumable prediction over files: order, windows, parts, kill -9 and resume, folders, counts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import sentiment_frame

import bertfit
from bertfit.data.io import iter_frames
from bertfit.errors import ConfigError, DataError
from bertfit.prediction.parts import OutputLock, lock_file
from bertfit.tokenization import token_budget_batches


@pytest.fixture(scope="module")
def clf(tiny_trained):
    return bertfit.Classifier.from_pretrained(tiny_trained, dtype="fp32")


def rows_with_ids(n: int, seed: int = 3, empty_every: int = 0) -> pd.DataFrame:
    df = sentiment_frame(n, seed=seed).assign(id=np.arange(n) + 1000)[["id", "text", "label"]]
    if empty_every:
        df.loc[df.index % empty_every == 0, "text"] = None
    return df


def test_token_budget_batches_cover_every_row_once_longest_first():
    lengths = np.array([5, 30, 12, 30, 7, 1, 64, 3])
    batches = token_budget_batches(lengths, batch_tokens=64)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert lengths[flat].tolist() == sorted(lengths.tolist(), reverse=True)
    assert all(len(b) * lengths[b].max() <= 64 for b in batches)
    assert [len(b) for b in token_budget_batches(lengths, 10_000, max_rows=3)] == [3, 3, 2]


@pytest.mark.parametrize("batch_tokens", [8, 64, 100_000])
def test_any_token_budget_gives_the_one_at_a_time_result(clf, batch_tokens):
    texts = rows_with_ids(40).text.tolist()
    single = np.vstack([clf.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(clf.predict_proba(texts, batch_tokens=batch_tokens), single, atol=1e-5)


def test_rust_encoder_matches_the_tokenizer_call_and_counts_truncation(clf):
    texts = rows_with_ids(30).text.tolist() + ["good " * 400]
    encoded = clf.encoder(texts)
    expected = clf.tokenizer(texts, truncation=True, max_length=clf.max_length)["input_ids"]
    assert encoded.ids == expected
    assert encoded.truncated == 1 and encoded.lengths[-1] == clf.max_length


def test_predict_stream_keeps_each_frame_in_order(clf):
    frames = [rows_with_ids(17, seed=s) for s in range(4)]
    outs = list(clf.predict_stream(iter(frames), probs=True))
    for frame, out in zip(frames, outs):
        assert out.id.tolist() == frame.id.tolist()
        expected = clf.predict_proba(frame.text)
        np.testing.assert_allclose(out[["prob_negative", "prob_positive"]].to_numpy(), expected, atol=1e-5)
        assert out.attrs["empty_text"] == 0


def test_predict_stream_passes_on_a_reader_error(clf):
    def frames():
        yield rows_with_ids(5)
        raise DataError("broken.csv: line 7 is not valid UTF-8")

    stream = clf.predict_stream(frames())
    assert len(next(stream)) == 5
    with pytest.raises(DataError, match="broken.csv"):
        next(stream)


def test_windows_and_parts_keep_input_order(clf, tiny_trained, tmp_path):
    df = rows_with_ids(103, empty_every=10)
    df.to_parquet(tmp_path / "in.parquet")
    summary = bertfit.predict_file(tiny_trained, tmp_path / "in.parquet", tmp_path / "out.csv", dtype="fp32", window=9)
    out = pd.read_csv(tmp_path / "out.csv")
    assert out.id.tolist() == df.id.tolist() and len(out) == 103
    assert summary["rows"] == 103 and summary["empty_text"] == 11
    assert out.pred_label.isna().tolist() == df.text.isna().tolist()
    expected = [p["label"] or "-" for p in clf.predict(df.text)]
    assert out.pred_label.fillna("-").tolist() == expected
    assert not list(tmp_path.glob(".*")), "the parts folder is removed once the output is complete"


def test_csv_columns_come_back_as_their_text_in_parquet(tiny_trained, tmp_path):
    (tmp_path / "in.csv").write_text("id,text,score\n1,01,0.50\n2,great movie,\n3,,1.5\n", encoding="utf-8")
    bertfit.predict_file(tiny_trained, tmp_path / "in.csv", tmp_path / "out.parquet", window=2)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out.id.tolist() == ["1", "2", "3"] and out.text.tolist() == ["01", "great movie", ""]
    assert out.score.tolist() == ["0.50", "", "1.5"]  # the same text in every window, never re-typed
    assert out.pred_label.isna().tolist() == [False, False, True]


@pytest.mark.parametrize("suffix", [".jsonl", ".tsv.gz", ".h5", ".parquet"])
def test_every_output_format_assembles_the_same_rows(tiny_trained, tmp_path, suffix):
    df = rows_with_ids(25)
    df.to_parquet(tmp_path / "in.parquet")
    bertfit.predict_file(tiny_trained, tmp_path / "in.parquet", tmp_path / f"out{suffix}", window=4)
    out = bertfit.data.io.read_table(tmp_path / f"out{suffix}")
    ids = [str(i) for i in df.id] if suffix == ".tsv.gz" else df.id.tolist()  # TSV holds text, not types
    assert out.id.tolist() == ids and out.text.tolist() == df.text.tolist()
    assert out.pred_label.notna().all()


def test_folder_of_shards_in_and_folder_out(tiny_trained, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    frames = [rows_with_ids(n, seed=n) for n in (12, 5, 20)]
    for i, frame in enumerate(frames):
        frame.to_parquet(shards / f"part-{i}.parquet")
    (shards / "_SUCCESS").write_text("")  # marker files are not data
    summary = bertfit.predict_file(tiny_trained, shards, tmp_path / "labelled", window=8)
    parts = sorted((tmp_path / "labelled").iterdir())
    out = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    assert summary["rows"] == 37 and out.id.tolist() == pd.concat(frames).id.tolist()
    assert all(p.suffix == ".parquet" for p in parts)


def test_a_non_empty_output_folder_is_refused(tiny_trained, tmp_path):
    rows_with_ids(5).to_parquet(tmp_path / "in.parquet")
    (tmp_path / "labelled").mkdir()
    (tmp_path / "labelled" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        bertfit.predict_file(tiny_trained, tmp_path / "in.parquet", tmp_path / "labelled")


def test_long_texts_are_truncated_and_counted(tiny_trained, tmp_path):
    df = rows_with_ids(6)
    df.loc[[1, 4], "text"] = "great " * 300
    df.to_parquet(tmp_path / "in.parquet")
    summary = bertfit.predict_file(tiny_trained, tmp_path / "in.parquet", tmp_path / "out.parquet", max_length=16)
    assert summary["truncated"] == 2 and summary["rows"] == 6


def test_bad_settings_fail_before_anything_is_written(tiny_trained, tmp_path):
    rows_with_ids(5).to_parquet(tmp_path / "in.parquet")
    for kwargs, message in [({"batch_tokens": 0}, "batch_tokens"), ({"window": 0}, "window"),
                            ({"dtype": "fp8"}, "precision"), ({"max_length": 1}, "max_length")]:  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            bertfit.predict_file(tiny_trained, tmp_path / "in.parquet", tmp_path / "out.csv", **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_a_bad_row_late_in_the_file_leaves_no_parts(tiny_trained, tmp_path):
    lines = ["text,label"] + [f"good film {i},positive" for i in range(30)]
    (tmp_path / "in.csv").write_bytes(("\n".join(lines) + "\nbad \xff,negative\n").encode("latin-1"))
    with pytest.raises(DataError, match="line 32 is not valid UTF-8"):
        bertfit.predict_file(tiny_trained, tmp_path / "in.csv", tmp_path / "out.csv", window=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_iter_frames_reads_exact_windows_from_every_format(tmp_path):
    df = rows_with_ids(23)
    for name in ("a.parquet", "a.csv", "a.jsonl", "a.h5"):
        bertfit.data.write.write_table(df, tmp_path / name)
        sizes = [len(f) for f in iter_frames(tmp_path / name, 10)]
        assert sizes == [10, 10, 3], name
        joined = pd.concat(iter_frames(tmp_path / name, 10), ignore_index=True)
        ids = [str(i) for i in df.id] if name.endswith(".csv") else df.id.tolist()
        assert joined.id.tolist() == ids, name


# Resume after a crash: a real subprocess killed with SIGKILL, then the same command again.


def predict_cmd(model: Path, inp: Path, out: Path) -> list[str]:
    script = Path(sys.executable).parent / "bertfit"
    return [str(script), "--quiet", "predict", str(model), str(inp), str(out), "--window", "100", "--json"]


def committed_parts(out: Path) -> int:
    manifest = out.parent / f".{out.name}.bertfit-parts" / "manifest.json"
    try:
        return len(json.loads(manifest.read_text())["parts"])
    except (OSError, ValueError):
        return 0


def test_kill_9_then_rerun_gives_the_uninterrupted_output(tiny_trained, tmp_path):
    df = rows_with_ids(20_000, empty_every=97)
    df.to_parquet(tmp_path / "in.parquet")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference.csv"
    done = subprocess.run(predict_cmd(tiny_trained, tmp_path / "in.parquet", reference), env=env, capture_output=True)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "out.csv"
    proc = subprocess.Popen(predict_cmd(tiny_trained, tmp_path / "in.parquet", out), env=env)
    deadline = time.time() + 120
    while committed_parts(out) < 5 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = committed_parts(out)
    assert 5 <= killed_at < 200, "the run should be killed part-way (200 parts in all)"
    assert not out.exists(), "no output under the final name before the run completes"
    stale = json.loads(lock_file(out).read_text())  # the killed run's lock file is left; its flock died with it
    assert stale["pid"] == proc.pid

    rerun = subprocess.run(predict_cmd(tiny_trained, tmp_path / "in.parquet", out), env=env, capture_output=True)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["resumed_rows"] >= killed_at * 100 and summary["rows"] == 20_000
    assert out.read_bytes() == reference.read_bytes()
    assert not list(tmp_path.glob(".out.csv.*")), "no parts left behind"


def test_a_second_run_into_the_same_output_refuses_while_the_first_finishes(tiny_trained, tmp_path):
    """Two predicts into one output: the second stops at once with one line naming the first, touching nothing;
    the first's output is complete and the same as a run alone."""
    rows_with_ids(20_000, empty_every=97).to_parquet(tmp_path / "in.parquet")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out.csv"
    first = subprocess.Popen(predict_cmd(tiny_trained, tmp_path / "in.parquet", out), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 120
    while committed_parts(out) < 2 and first.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    second = subprocess.run(predict_cmd(tiny_trained, tmp_path / "in.parquet", out), env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert second.returncode == 2 and second.stdout == "", second.stderr[-2000:]
    assert first.poll() is None, "the first run ended before the second was refused; the test proves nothing"
    [line] = second.stderr.splitlines()
    assert line.startswith(f"error: {out}: another run is writing it (bertfit predict, pid {first.pid} on ")
    assert socket.gethostname() in line and "wait for it to finish or stop it" in line

    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    summary = json.loads(stdout)
    assert (summary["rows"], summary["resumed_rows"]) == (20_000, 0)
    bertfit.predict_file(tiny_trained, tmp_path / "in.parquet", tmp_path / "alone.csv", window=100)
    assert out.read_bytes() == (tmp_path / "alone.csv").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone.csv", "in.parquet", "out.csv"]


def test_the_lock_names_its_holder_and_dies_with_it(tiny_trained, tmp_path):
    """The OS lock ends with its process (kill -9 included): a stale lock file blocks nothing. In one process, a
    second thread is refused like a second process, and the library calls refuse like the CLI."""
    out = tmp_path / "out.parquet"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    rows_with_ids(10).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(DataError, match=rf"another run is writing it \(bertfit predict, pid {holder.pid} on "):
        bertfit.predict_file(tiny_trained, tmp_path / "in.parquet", out)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert json.loads(lock_file(out).read_text())["pid"] == holder.pid  # stale: left by the killed holder

    with OutputLock(out):
        assert json.loads(lock_file(out).read_text())["pid"] == os.getpid()
        refused = []
        thread = threading.Thread(target=lambda: refused.append(catch(lambda: OutputLock(out).__enter__())))
        thread.start()
        thread.join()
        assert isinstance(refused[0], DataError) and f"pid {os.getpid()}" in str(refused[0])
    assert not lock_file(out).exists()
    assert bertfit.predict_file(tiny_trained, tmp_path / "in.parquet", out)["rows"] == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "out.parquet"]


HOLD_LOCK = """
import sys, time
from pathlib import Path
from bertfit.prediction.parts import OutputLock
with OutputLock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def catch(call):
    try:
        call()
    except Exception as error:
        return error
    return None


def test_changed_settings_start_over_instead_of_mixing(tiny_trained, tmp_path):
    rows_with_ids(50).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    work = tmp_path / ".out.parquet.bertfit-parts"
    work.mkdir()
    (work / "part-00000.parquet").write_bytes(b"left over from another run")
    (work / "manifest.json").write_text(json.dumps({"version": 1, "key": {"other": 1}, "parts": [
        {"file": "part-00000.parquet", "source": 0, "rows": 10, "empty_text": 0, "truncated": 0}]}))  # fmt: skip
    summary = bertfit.predict_file(tiny_trained, tmp_path / "in.parquet", out, window=10)
    assert summary["resumed_rows"] == 0 and len(pd.read_parquet(out)) == 50


def test_row_estimates_for_the_progress_bar(tmp_path):
    df = rows_with_ids(23)
    for name in ("a.parquet", "a.csv", "a.jsonl"):
        bertfit.data.write.write_table(df, tmp_path / name)
        assert bertfit.data.io.estimate_rows([tmp_path / name]) == 23, name
    (tmp_path / "b.csv").write_text("text\nno newline at the end")
    assert bertfit.data.io.estimate_rows([tmp_path / "b.csv"]) == 1
    bertfit.data.write.write_table(df, tmp_path / "a.csv.gz")
    assert bertfit.data.io.estimate_rows([tmp_path / "a.csv.gz", tmp_path / "a.csv"]) is None


@pytest.mark.parametrize("name", ["empty.parquet", "empty.csv"])
def test_an_input_with_no_rows_gives_an_output_with_no_rows(tiny_trained, tmp_path, name):
    bertfit.data.write.write_table(rows_with_ids(3).head(0), tmp_path / name)
    summary = bertfit.predict_file(tiny_trained, tmp_path / name, tmp_path / "out.parquet")
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert summary["rows"] == 0 and len(out) == 0
    assert list(out.columns) == ["id", "text", "label", "pred_label", "pred_score"]
