"""Engines and export: ONNX Runtime and OpenVINO give torch fp32's labels (single-label, multi-label, pairs, sliding
windows) in the same pipeline; an export loads in the plain runtimes; the int8 accuracy gate refuses what it must;
kill -9 and resume with the onnx engine; one-line errors."""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from conftest import FILLER, NEGATIVE, POSITIVE, long_text, pair_frame, sentiment_frame
from test_predict_stream import committed_parts, predict_cmd, rows_with_ids
from typer.testing import CliRunner

import bertfit
from bertfit.cli import app
from bertfit.errors import BertfitError, ConfigError, ModelError

pytest.importorskip("onnxruntime", reason="the onnx engine needs: pip install 'bertfit[onnx]'")
pytest.importorskip("openvino", reason="the openvino engine needs: pip install 'bertfit[openvino]'")
pytestmark = pytest.mark.usefixtures("restore_cli_state")

FORMATS = ["onnx", "openvino"]
KINDS = ["single", "multi", "pairs", "sliding"]


@pytest.fixture(scope="module")
def models(tiny_trained, multi_model, pair_model, sliding_model):
    return {"single": tiny_trained, "multi": multi_model.model_dir, "pairs": pair_model,
            "sliding": sliding_model.model_dir}  # fmt: skip


@pytest.fixture(scope="module")
def exports(models, tmp_path_factory):
    """Each kind of model exported to each format (fp32), made on first use."""
    made = {}

    def get(kind: str, fmt: str):
        if (kind, fmt) not in made:
            out = tmp_path_factory.mktemp("exports") / f"{kind}-{fmt}"
            bertfit.export(models[kind], out, fmt)
            made[kind, fmt] = out
        return made[kind, fmt]

    return get


@functools.cache
def torch_classifier(model_dir):
    return bertfit.Classifier.from_pretrained(model_dir, dtype="fp32")


def inputs_of(kind: str) -> list:
    if kind == "pairs":
        return list(pair_frame(40, seed=5)[["premise", "hypothesis"]].itertuples(index=False, name=None))
    if kind == "sliding":
        return [f"{t} {long_text(4 + i % 7, i)} {t}" for i, t in enumerate(sentiment_frame(30, seed=6).text)]
    texts = sentiment_frame(40, seed=5).text.tolist()
    return texts[:20] + [" ".join(random.Random(i).sample(FILLER + POSITIVE + NEGATIVE, 6)) for i in range(20)]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_engine_gives_the_torch_labels(models, exports, kind, fmt):
    torch_clf = torch_classifier(models[kind])
    clf = bertfit.Classifier.from_pretrained(exports(kind, fmt), dtype="fp32")  # the folder's own engine
    assert (clf.engine, clf.dtype, clf.model) == (fmt, "fp32", None)
    texts = inputs_of(kind)
    if kind == "sliding":
        assert len(clf.encoder(texts).lengths) > 2 * len(texts), "texts must span several windows"
    expected, got = torch_clf.predict_proba(texts), clf.predict_proba(texts, batch_tokens=64)
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert np.ptp(expected, axis=0).max() > 2e-4, "the texts must get different scores (10x the tolerance)"
    key = "labels" if kind == "multi" else "label"
    assert [r[key] for r in clf.predict(texts)] == [r[key] for r in torch_clf.predict(texts)]
    if kind == "single":  # calibration applies the same way: the stored temperature divides the logits
        saved, clf.temperature, torch_clf.temperature = torch_clf.temperature, 0.5, 0.5
        np.testing.assert_allclose(clf.predict_proba(texts), torch_clf.predict_proba(texts), atol=4e-5)
        torch_clf.temperature = saved


def test_the_export_loads_in_plain_onnxruntime_and_openvino(models, exports):
    import onnxruntime
    import openvino
    from transformers import AutoTokenizer

    texts = inputs_of("single")
    torch_clf = bertfit.Classifier.from_pretrained(models["single"], dtype="fp32", calibration=False)
    expected = np.log(torch_clf.predict_proba(texts))  # log-softmax: logits up to a constant per row
    for fmt in FORMATS:
        folder = exports("single", fmt)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        feeds = dict(tokenizer(texts, padding=True, return_tensors="np"))
        if fmt == "onnx":
            logits = onnxruntime.InferenceSession(str(folder / "model.onnx")).run(["logits"], feeds)[0]
        else:
            compiled = openvino.Core().compile_model(folder / "openvino_model.xml", "CPU",
                                                     {"INFERENCE_PRECISION_HINT": "f32"})  # fmt: skip
            logits = compiled(feeds)["logits"]
        got = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=fmt)
        meta = json.loads((folder / "bertfit.json").read_text())
        assert meta["labels"]["names"] == ["negative", "positive"] and meta["export"]["format"] == fmt


def test_an_int8_export_passes_the_gate_on_the_validation_sample_and_records_it(tiny_trained, exports, tmp_path):
    out = tmp_path / "int8"
    record = bertfit.export(tiny_trained, out, "onnx", int8=True)
    gate = record["gate"]
    assert gate["passed"] and gate["rows"] == 80 and gate["agreement"] >= 0.995
    assert set(gate["fp32"]) == {"accuracy", "macro_f1", "ece"} and gate["data"].startswith("the validation sample")
    assert json.loads((out / "bertfit.json").read_text())["export"] == record
    clf = bertfit.Classifier.from_pretrained(out)
    assert (clf.engine, clf.dtype) == ("onnx", "int8")
    shown = CliRunner().invoke(app, ["info", str(out), "--json"])
    expected = {"format": "onnx", "int8": True, "method": record["method"], "agreement": gate["agreement"],
                "macro_f1_drop": gate["macro_f1_drop"], "passed": True}  # fmt: skip
    assert json.loads(shown.stdout)["export"] == expected
    assert (out / "model.onnx").stat().st_size < (exports("single", "onnx") / "model.onnx").stat().st_size


@pytest.fixture(scope="module")
def edge_model(tiny_trained, tmp_path_factory):
    """tiny_trained with its classifier bias moved so that the texts of its denser score cluster straddle the
    decision boundary, and a --validate file of the 60 nearest it (with their fp32 labels, both labels present):
    int8 errors (~1e-3 in a logit) flip some of them, whatever their sign."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("edge") / "model"
    shutil.copytree(tiny_trained, folder)
    rng = random.Random(7)
    texts = [" ".join(rng.sample(FILLER + POSITIVE + NEGATIVE, rng.randint(3, 9))) for _ in range(2000)]
    clf = bertfit.Classifier.from_pretrained(folder, dtype="fp32")
    logits = clf.scorer.logits(clf.encoder(texts), 4096, None)
    margin = logits[:, 1] - logits[:, 0]
    weights = load_file(folder / "model.safetensors")
    weights["classifier.bias"][1] -= float(np.median(margin))
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    nearest = [texts[i] for i in np.argsort(np.abs(margin - np.median(margin)))[:60]]
    labels = [r["label"] for r in bertfit.Classifier.from_pretrained(folder, dtype="fp32").predict(nearest)]
    assert 10 < labels.count("positive") < 50, "the rows must lie on both sides of the boundary"
    pd.DataFrame({"text": nearest, "label": labels}).to_csv(folder.parent / "edge.csv", index=False)
    return folder, folder.parent / "edge.csv"


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_gate_refuses_a_broken_int8_export_and_force_writes_it(edge_model, tmp_path, fmt):
    model, edge = edge_model
    args = ["export", model, "--format", fmt, "--int8", "--validate", edge, "-o", tmp_path / "out"]
    if fmt == "openvino":
        (tmp_path / "one.csv").write_text("text\ngood\n")  # a calibration set of one text of one word
        args += ["--calibration", tmp_path / "one.csv"]
    refused = CliRunner().invoke(app, ["--quiet", *map(str, args)])
    assert refused.exit_code == 2, refused.output
    [line] = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: the {fmt} export (") and "fails the accuracy gate" in line and "--force" in line
    assert "Traceback" not in refused.output
    assert sorted(p.name for p in tmp_path.iterdir()) == (["one.csv"] if fmt == "openvino" else [])

    if fmt == "openvino":
        return  # NNCF takes seconds a setting: --force is shown with onnx
    forced = CliRunner().invoke(app, ["--quiet", *map(str, args), "--force", "--json"])
    assert forced.exit_code == 0, forced.output
    record = json.loads(forced.stdout)
    assert record["forced"] and not record["gate"]["passed"] and record["gate"]["agreement"] < 0.995
    assert len(record["tried"]) == 3 and record["gate"]["rows"] == 60
    assert json.loads((tmp_path / "out" / "bertfit.json").read_text())["export"]["forced"] is True


@pytest.mark.parametrize("fmt", FORMATS)
def test_kill_9_then_rerun_gives_the_uninterrupted_output_with_each_engine(exports, tmp_path, fmt):
    folder = exports("single", fmt)
    rows_with_ids(6000, empty_every=97).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*predict_cmd(folder, tmp_path / "in.parquet", out), "--engine", fmt], env=env)
    deadline = time.time() + 120
    while committed_parts(out) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = committed_parts(out)
    assert 3 <= killed_at < 60, "the run should be killed part-way (60 parts in all)"
    assert not out.exists()

    runs = {}
    for name in ("out.csv", "reference.csv"):  # the rerun resumes; the reference runs whole
        rerun = CliRunner().invoke(app, [*predict_cmd(folder, tmp_path / "in.parquet", tmp_path / name)[1:],
                                         "--engine", fmt])  # fmt: skip
        assert rerun.exit_code == 0, rerun.output
        runs[name] = json.loads(rerun.stdout)
    assert runs["out.csv"]["resumed_rows"] >= killed_at * 100 and runs["reference.csv"]["resumed_rows"] == 0
    assert runs["out.csv"]["engine"] == fmt and runs["out.csv"]["rows"] == 6000
    assert out.read_bytes() == (tmp_path / "reference.csv").read_bytes()


def test_predict_and_evaluate_take_an_engine(models, exports, tmp_path):
    folder = exports("single", "onnx")
    df = sentiment_frame(30, seed=9)
    df.to_csv(tmp_path / "in.csv", index=False)
    runs = {}
    for engine in ("auto", "local", "torch", "onnx"):
        result = CliRunner().invoke(app, ["predict", str(folder), str(tmp_path / "in.csv"),
                                          str(tmp_path / f"{engine}.csv"), "--engine", engine, "--dtype", "fp32",
                                          "--json"])  # fmt: skip
        assert result.exit_code == 0, result.output
        runs[engine] = json.loads(result.stdout)["engine"]
        assert pd.read_csv(tmp_path / f"{engine}.csv").pred_label.tolist() == pd.read_csv(
            tmp_path / "auto.csv").pred_label.tolist()  # fmt: skip
    assert runs == {"auto": "onnx", "local": "onnx", "torch": "torch", "onnx": "onnx"}
    by_torch = bertfit.evaluate(models["single"], tmp_path / "in.csv", dtype="fp32")
    by_onnx = bertfit.evaluate(folder, tmp_path / "in.csv", engine="onnx")
    assert by_onnx["accuracy"] == by_torch["accuracy"] and by_onnx["ece"] == pytest.approx(by_torch["ece"], abs=1e-5)


def test_bad_requests_are_one_line_errors_that_write_nothing(models, exports, tmp_path):
    result = CliRunner().invoke(app, ["export", str(models["single"]), "--format", "tflite", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    [line] = result.stderr.splitlines()
    assert line == "error: --format must be one of onnx, openvino (got 'tflite')"
    with pytest.raises(ModelError, match="no model.onnx for the onnx engine; write one with 'bertfit export"):
        bertfit.Classifier.from_pretrained(models["single"], engine="onnx")
    with pytest.raises(BertfitError, match="engine must be one of auto, torch, onnx, openvino"):
        bertfit.Classifier.from_pretrained(models["single"], engine="tensorrt")
    with pytest.raises(BertfitError, match="the onnx engine runs fp32"):
        bertfit.Classifier.from_pretrained(exports("single", "onnx"), dtype="bf16")
    with pytest.raises(BertfitError, match="is an export already"):
        bertfit.export(exports("single", "onnx"), tmp_path / "again", "onnx")
    with pytest.raises(BertfitError, match="--calibration is for --format openvino --int8"):
        bertfit.export(models["single"], tmp_path / "x", "onnx", int8=True, calibration=models["single"] / "README.md")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(BertfitError, match="folder exists and is not a bertfit export"):
        bertfit.export(models["single"], tmp_path / "mine", "onnx")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["mine", "notes.txt"]


def test_an_export_without_torch_weights_runs_and_a_new_export_replaces_an_old(models, exports, tmp_path):
    shutil.copytree(exports("single", "onnx"), tmp_path / "slim")
    (tmp_path / "slim" / "model.safetensors").unlink()  # deployed with its engine file only
    texts = inputs_of("single")
    expected = torch_classifier(models["single"]).predict_proba(texts)
    np.testing.assert_allclose(bertfit.Classifier.from_pretrained(tmp_path / "slim").predict_proba(texts), expected,
                               atol=2e-5)  # fmt: skip
    with pytest.raises(ModelError, match="holds no torch weights"):
        bertfit.Classifier.from_pretrained(tmp_path / "slim", engine="torch")
    bertfit.export(models["single"], tmp_path / "slim", "openvino")  # an export is replaced whole
    assert not (tmp_path / "slim" / "model.onnx").exists() and bertfit.Classifier.from_pretrained(
        tmp_path / "slim").engine == "openvino"  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slim"]


def test_an_export_explains_on_the_torch_weights_kept_beside_it(models, exports, tmp_path):
    """Classifier.explain on an ONNX export: the same words and attributions as the torch folder's (the export keeps
    the fp32 weights); an export deployed without them refuses in one line naming the file."""
    texts = ["a great film", "the plot was awful and boring"]
    want = torch_classifier(models["single"]).explain(texts, n_steps=20)
    exported = bertfit.Classifier.from_pretrained(exports("single", "onnx"))
    assert exported.engine == "onnx"
    got = exported.explain(texts, n_steps=20)
    assert [e.words for e in got] == [e.words for e in want] and [e.label for e in got] == [e.label for e in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.attributions, w.attributions, atol=1e-5)
    shutil.copytree(exports("single", "onnx"), tmp_path / "slim")
    (tmp_path / "slim" / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"explain needs torch weights \(model.safetensors\) beside the onnx model"):
        bertfit.Classifier.from_pretrained(tmp_path / "slim").explain(texts)


def test_the_last_onnx_setting_keeps_the_pooler_and_classifier_in_fp32(exports, tmp_path):
    import onnx

    from bertfit.exporting.convert import ONNX_RUNGS, head_nodes_onnx, quantize_onnx

    source = exports("single", "onnx") / "model.onnx"
    head = head_nodes_onnx(source)
    assert len(head) == 2 and any("classifier" in name for name in head)
    for rung, head_op in ((ONNX_RUNGS[0], "MatMulInteger"), (ONNX_RUNGS[-1], "MatMul")):
        quantize_onnx(source, tmp_path / "q.onnx", rung)
        ops = {node.name: node.op_type for node in onnx.load(str(tmp_path / "q.onnx")).graph.node}
        assert "MatMulInteger" in ops.values(), "the encoder is int8 either way"
        # ORT turns a Gemm into NAME_MatMul + Add; quantized, the MatMul becomes NAME_MatMul_quant (MatMulInteger)
        assert [ops.get(f"{name}_MatMul_quant", ops.get(f"{name}_MatMul")) for name in head] == [head_op] * 2, rung


def test_the_first_feed_forward_rung_keeps_those_matmuls_float_is_recorded_and_loads_in_plain_openvino(
    tiny_trained, tmp_path, monkeypatch
):
    import openvino

    from bertfit.exporting import convert

    [rung] = [r for r in convert.OPENVINO_RUNGS if "first half's feed-forward" in r]
    monkeypatch.setattr(convert, "OPENVINO_RUNGS", (rung,))  # the ladder starts (and ends) at this rung
    record = bertfit.export(tiny_trained, tmp_path / "ov", "openvino", int8=True, force=True)
    assert record["method"] == rung and [t["method"] for t in record["tried"]] == [rung]
    assert json.loads((tmp_path / "ov" / "bertfit.json").read_text())["export"]["method"] == rung

    plain = openvino.Core().read_model(tmp_path / "ov" / "openvino_model.xml")  # no bertfit: plain OpenVINO
    fed = {op.get_friendly_name(): op.input_value(0).get_node().get_type_name()
           for op in plain.get_ordered_ops() if op.get_type_name() == "MatMul"}  # fmt: skip
    # a quantized MatMul takes its activations through a FakeQuantize; the tiny BERT has 2 layers
    kept = sorted(name.split(".", 2)[-1].split("/")[0] for name, op in fed.items() if op != "FakeQuantize")
    assert kept == ["bert.encoder.layer.0.output.dense", "bert.pooler.dense", "classifier"], fed  # layer 1's is int8
    assert len(fed) == 14 and len(kept) == 3  # the 11 other linears of the encoder are int8
    texts = inputs_of("single")
    feeds = dict(bertfit.Classifier.from_pretrained(tiny_trained).tokenizer(texts, padding=True, return_tensors="np"))
    logits = openvino.Core().compile_model(plain, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(feeds)["logits"]
    expected = torch_classifier(tiny_trained).predict_proba(texts).argmax(1)
    assert (logits.argmax(1) == expected).mean() >= 0.9
