"""export(): a model folder -> an engine folder for ONNX Runtime or OpenVINO, int8 behind an accuracy gate.

The pipeline: check the request -> load the fp32 torch model -> the gate's labelled rows (--validate, or the
validation sample training kept) -> copy the model folder into a temporary folder beside the output -> convert
(torch.onnx.export / openvino.convert_model) -> for int8, quantize with each setting of the ladder until one passes
the gate -> bertfit.json records the export and the gate's figures -> rename into place. A refused export, or any
error, leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from contextlib import closing, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np

from bertfit.data.io import PLAIN, ReadOptions, data_files, iter_frames
from bertfit.data.paths import SIDE_MARK, check_not_input, model_files
from bertfit.data.rows import input_texts, load_labelled
from bertfit.data.sample import read_validation_sample
from bertfit.data.write import check_folder_writable, write_json
from bertfit.errors import ConfigError, DataError, ModelError
from bertfit.evaluation.evaluate import data_config
from bertfit.exporting import convert
from bertfit.exporting.gate import GateRows, figures, probabilities
from bertfit.modeling import BERTFIT_FILE, ENGINE_FILES, library_versions, read_meta, require_model_dir
from bertfit.prediction.classifier import Classifier, clean_input
from bertfit.prediction.engines import (
    folder_engine,
    import_onnxruntime,
    import_openvino,
    model_feeds,
    save_openvino,
    to_openvino,
)

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "openvino")
CALIBRATION_ROWS = 300  # texts NNCF takes activation ranges from (its own default subset size)
SAMPLE_SOURCE = "the validation sample kept by training"
SKIPPED = {"report", "tensorboard", "training_log.jsonl", "training_curve.png"}  # not needed to predict


def export(
    model_dir: str | Path,
    output: str | Path,
    format: str,
    int8: bool = False,
    calibration: str | Path | None = None,
    validate: str | Path | None = None,
    force: bool = False,
    text_cols: list[str] | None = None,
    label_col: str | None = None,
    read: ReadOptions | None = None,
) -> dict[str, Any]:
    """Write `output`: the model folder's own files (bertfit.json, config.json, tokenizer, weights, metrics) plus
    model.onnx (`format="onnx"`) or openvino_model.xml/.bin (`"openvino"`), which `bertfit predict`, `evaluate` and
    `Classifier.from_pretrained` then run with that engine, and plain onnxruntime / openvino load without bertfit.

    Args:
        int8: quantize (ONNX Runtime dynamic quantization; NNCF post-training quantization for OpenVINO) and check
            the result against the fp32 torch model on labelled rows: an export that agrees on fewer than 99.5% of
            them, or loses more than 0.5 point of macro-F1, is refused (nothing is written) unless `force`.
        calibration: openvino int8: a table of texts (the model's text columns) to take activation ranges from
            (its first 300 rows); default: the gate's rows (their texts only; labels are never used).
        validate: a labelled table to check the export on; default: the validation sample training kept in the
            model folder (validation_sample.parquet). Without either, an int8 export needs `force`.
        force: write the export even when it fails the gate (or cannot be checked); the figures are recorded.
        text_cols, label_col, read: how to read `validate` and `calibration` (default: as the model was trained).

    Returns:
        What bertfit.json records under "export": format, int8, method, the settings tried with their gate figures
        ("gate": agreement, accuracy / macro-F1 / ECE of fp32 and the export, macro-F1 drop, passed), versions.
    """
    source, output = Path(model_dir), Path(output)
    _check_request(source, output, format, int8, calibration, validate)
    reference = Classifier.from_pretrained(source, engine="torch", dtype="fp32")
    read = read or PLAIN
    rows = gate_rows(reference, source, validate, text_cols, label_col, read)
    if int8 and rows is None and not force:
        raise ModelError(
            f"{source}: holds no validation sample to check an int8 export against (trained before bertfit kept "
            "one); pass --validate FILE with labelled rows, or --force to export unchecked"
        )
    feeds = _calibration_feeds(reference, calibration, rows, text_cols, read) if int8 and format == "openvino" else []
    staging = output.parent / f".{output.name}{SIDE_MARK}export-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _copy_model(source, staging)
        with redirect_stdout(sys.stderr):  # the converters print progress; stdout is for results (--json)
            record = _convert(reference, staging, format, int8, rows, feeds, force)
        write_json({**reference.meta, "export": record}, staging / BERTFIT_FILE)
        _put_in_place(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record


def _check_request(
    source: Path, output: Path, format: str, int8: bool, calibration: str | Path | None, validate: str | Path | None
) -> None:
    """Every user error before any work: format, options that do not go together, the model, the files, the output,
    and the runtime's packages."""
    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)} (got '{format}')")
    if calibration is not None and not (int8 and format == "openvino"):
        raise ConfigError("--calibration is for --format openvino --int8 (ONNX Runtime's int8 needs no calibration)")
    require_model_dir(source)
    if output.resolve() == source.resolve() or source.resolve() in output.resolve().parents:
        raise DataError(f"{output}: is inside the model folder {source}; choose an --output folder beside it")
    if folder_engine(source) != "torch":
        raise ModelError(f"{source}: is an export already; export from the model folder 'bertfit train' wrote")
    for path in (validate, calibration):
        if path is not None:
            data_files(Path(path))  # missing or unreadable: fails now
    check_not_input(output, [validate, calibration, *model_files(source)], "--output folder")
    _check_output(output)
    if format == "onnx":
        import_onnxruntime()
    else:
        import_openvino()
        if int8:
            convert._import_nncf()


def _check_output(output: Path) -> None:
    """The output may be new, an empty folder, or an earlier export (replaced); nothing else is written over."""
    if output.exists() and not output.is_dir():
        raise DataError(f"{output}: exists and is a file; choose another --output folder")
    found = sorted(p.name for p in output.iterdir()) if output.is_dir() else []
    if found and "export" not in read_meta(output):
        raise DataError(
            f"{output}: folder exists and is not a bertfit export (it holds {', '.join(found[:3])}); bertfit "
            "replaces only its own exports or an empty folder; choose another --output"
        )
    check_folder_writable(output)


def gate_rows(
    clf: Classifier, source: Path, validate: str | Path | None, text_cols: list[str] | None,
    label_col: str | None, read: ReadOptions,
) -> GateRows | None:  # fmt: skip
    """The labelled rows to check an export on: the --validate file, else the model's validation sample."""
    if validate is None:
        sample = read_validation_sample(source)
        return None if sample is None else GateRows(sample[0], sample[1], SAMPLE_SOURCE)
    cfg = data_config(clf, text_cols, label_col, read, read.allow_pickle)
    labelled, _ = load_labelled(validate, cfg, schema=clf.schema, role="validation")
    encoded = clf.encoder([clean_input(t) for t in labelled.texts])
    return GateRows(encoded, np.asarray(labelled.labels), str(validate))


def _calibration_feeds(
    clf: Classifier, calibration: str | Path | None, rows: GateRows | None, text_cols: list[str] | None,
    read: ReadOptions,
) -> list[dict[str, np.ndarray]]:  # fmt: skip
    """Up to 300 inputs (one text each, as the exported model takes them) for NNCF's activation ranges."""
    if calibration is not None:
        cols = text_cols or clf.text_cols
        with closing(iter_frames(Path(calibration), CALIBRATION_ROWS, cols, read, passthrough=True)) as frames:
            frame = next(frames, None)
        if frame is None:
            raise DataError(f"{calibration}: no rows; --calibration takes a table of texts")
        texts, missing = input_texts(frame, cols, clf.pair_col, str(calibration))
        encoded = clf.scorer.encode_present([t for t, m in zip(texts.tolist(), missing.tolist()) if not m])
    elif rows is not None:
        encoded = rows.encoded
    else:
        raise ModelError("no calibration texts: pass --calibration FILE (texts) or --validate FILE (labelled rows)")
    names = model_inputs(clf)
    feeds = []
    for i in range(min(CALIBRATION_ROWS, len(encoded.ids))):
        starts = None if encoded.type_starts is None else encoded.type_starts[i : i + 1]
        batch = clf.encoder.pad([encoded.ids[i]], encoded.lengths[i : i + 1], starts)
        feeds.append(model_feeds(names, batch))
    return feeds


def model_inputs(clf: Classifier) -> list[str]:
    """The inputs an exported model takes: what the model's tokenizer gives (token_type_ids for BERT-like ones)."""
    return ["input_ids", "attention_mask", *(["token_type_ids"] if clf.encoder.type_ids else [])]


def _copy_model(source: Path, staging: Path) -> None:
    """The model's own files (weights, config, tokenizer, bertfit.json, metrics, card, validation sample) into the
    staging folder; the report, logs and curves stay with the training output."""

    def skipped(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n in SKIPPED or (n.startswith(".") and SIDE_MARK in n)]

    shutil.copytree(source, staging, ignore=skipped)
    check_folder_writable(staging)


def _convert(
    clf: Classifier, staging: Path, format: str, int8: bool, rows: GateRows | None,
    feeds: list[dict[str, np.ndarray]], force: bool,
) -> dict[str, Any]:  # fmt: skip
    """Write the engine file into `staging` (for int8: the first setting of the ladder that passes the gate) and
    return the record of what was done."""
    example = example_batch(clf)
    if format == "onnx":
        fp32 = staging / ("model-fp32.onnx" if int8 else ENGINE_FILES["onnx"])
        convert.to_onnx(clf.model, example, fp32)

        def make(rung: str) -> None:
            if int8:
                convert.quantize_onnx(fp32, staging / ENGINE_FILES["onnx"], rung)

        rungs = convert.ONNX_RUNGS
    else:
        ov_model = to_openvino(clf.model, example)

        def make(rung: str) -> None:
            quantized = convert.quantize_openvino(ov_model, feeds, rung) if int8 else ov_model
            save_openvino(quantized, staging / ENGINE_FILES["openvino"])

        rungs = convert.OPENVINO_RUNGS
    record = _ladder(clf, staging, format, make, rungs if int8 else ("fp32",), rows, force or not int8)
    (staging / "model-fp32.onnx").unlink(missing_ok=True)
    runtimes = ["onnxruntime", "onnx"] if format == "onnx" else ["openvino", *(["nncf"] if int8 else [])]
    versions = {**library_versions(), **_versions(*runtimes)}
    return {"format": format, "file": ENGINE_FILES[format], "int8": int8, **record, "versions": versions}


def _ladder(
    clf: Classifier, staging: Path, format: str, make: Callable[[str], None], rungs: tuple[str, ...],
    rows: GateRows | None, force: bool,
) -> dict[str, Any]:  # fmt: skip
    """Make each setting in turn until one passes the gate (all of them when none does); with `force` (and for
    fp32 exports, whose figures are recorded but never refuse), the best one is kept when none passes. The
    record: the method kept, its gate figures, and every setting tried."""
    reference = probabilities(clf, rows) if rows is not None else None
    tried: list[dict[str, Any]] = []
    for rung in rungs:
        make(rung)
        if reference is None:
            return {"method": rung, "gate": None, "tried": [{"method": rung}]}
        exported = Classifier.from_pretrained(staging, engine=format)
        gate = {**figures(reference, probabilities(exported, rows), rows, clf), "inference_precision": exported.dtype}
        tried.append({"method": rung, "gate": gate})
        logger.info("%s: agreement %.4f, macro-F1 drop %.4f", rung, gate["agreement"], gate["macro_f1_drop"])
        if gate["passed"]:
            break
    best = max(tried, key=lambda t: (t["gate"]["passed"], t["gate"]["agreement"], -t["gate"]["macro_f1_drop"]))
    summary = [{"method": t["method"], **{k: t["gate"][k] for k in ("agreement", "macro_f1_drop", "passed")}}
               for t in tried]  # fmt: skip
    if best["gate"]["passed"]:
        return {**best, "tried": summary}
    if not force:
        raise ModelError(_refusal(format, best, len(tried)))
    if best is not tried[-1]:
        make(best["method"])
    logger.warning("the %s export fails the accuracy gate (agreement %.4f, macro-F1 drop %.4f); written anyway",
                   format, best["gate"]["agreement"], best["gate"]["macro_f1_drop"])  # fmt: skip
    return {**best, "forced": True, "tried": summary}


def _refusal(format: str, best: dict[str, Any], count: int) -> str:
    gate = best["gate"]
    before, after = gate["fp32"]["macro_f1"], gate["export"]["macro_f1"]
    kind = f"{format} export ({best['method']})"
    return (
        f"the {kind} fails the accuracy gate on {gate['rows']} rows of {gate['data']}: agreement "
        f"{gate['agreement']:.4f} with fp32 (needs 0.995), macro-F1 {before:.4f} -> {after:.4f} (at most 0.005 "
        f"lower), best of {count} settings tried; nothing was written: export without --int8, or pass --force "
        "to write it"
    )


def example_batch(clf: Classifier) -> dict[str, Any]:
    """A padded batch of two texts of different lengths (pairs: two segments) to trace the model with."""
    texts: list[Any] = ["an example text to trace the model with", "a shorter one"]
    if clf.pair_col:
        texts = [(t, "and its second text") for t in texts]
    encoded = clf.encoder(texts)
    batch = clf.encoder.pad(encoded.ids, encoded.lengths, encoded.type_starts)
    if "token_type_ids" in model_inputs(clf) and "token_type_ids" not in batch:
        batch["token_type_ids"] = batch["input_ids"] * 0
    return {name: batch[name] for name in model_inputs(clf)}


def _put_in_place(staging: Path, output: Path) -> None:
    """Rename the complete staging folder to the output; an earlier export there is moved aside, then removed."""
    old = output.parent / f".{output.name}{SIDE_MARK}export-old-{os.getpid()}"
    if output.exists():
        output.rename(old)
    staging.rename(output)
    shutil.rmtree(old, ignore_errors=True)


def _versions(*packages: str) -> dict[str, str]:
    from importlib import metadata

    return {p: metadata.version(p) for p in packages}
