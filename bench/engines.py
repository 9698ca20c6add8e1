"""The export variants of bench/predict.py (--engines) and the int8 exports' accuracy-gate table (--gate-models).

Each export is made once into bench/.cache/MODEL-ENGINE with `bertfit.export(..., force=True)` (so an int8 export
that fails the gate is still written, with its figures) and reused while the model folder's bertfit.json is older.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import bertfit
from bertfit.prediction.classifier import Classifier

CACHE = Path(__file__).resolve().parent / ".cache"
ENGINE_EXPORTS = {"onnx": ("onnx", False), "onnx-int8": ("onnx", True), "openvino": ("openvino", False),
                  "openvino-int8": ("openvino", True)}  # fmt: skip


def export_folder(model_dir: Path, name: str) -> Path:
    """The cached export `name` (a key of ENGINE_EXPORTS) of the model, made when missing or older than it."""
    fmt, int8 = ENGINE_EXPORTS[name]
    folder = CACHE / f"{model_dir.name}-{name}"
    meta = folder / "bertfit.json"
    if not meta.exists() or meta.stat().st_mtime < (model_dir / "bertfit.json").stat().st_mtime:
        print(f"exporting {model_dir} as {name} into {folder} ...", flush=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        bertfit.export(model_dir, folder, fmt, int8=int8, force=True)
    return folder


def export_record(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "bertfit.json").read_text())["export"]


def engine_runs(model_dir: Path, names: list[str]) -> list[tuple[str, Callable[[list[str]], np.ndarray]]]:
    """(label, predict_proba) per export, each loaded with its own engine at its default precision."""
    runs = []
    for name in names:
        folder = export_folder(model_dir, name)
        gate = export_record(folder).get("gate") or {}
        clf = Classifier.from_pretrained(folder)
        shown = f", gate agreement {gate['agreement']:.4f}" if gate else ""
        runs.append((f"{name} ({clf.engine} {clf.dtype}{shown})", clf.predict_proba))
    return runs


def gate_table(models: list[Path], names: list[str]) -> list[dict[str, Any]]:
    """The gate's figures of each int8 export (of `names`) of each model: the rung kept and every rung tried."""
    out = []
    for model_dir in models:
        for name in (n for n in names if ENGINE_EXPORTS[n][1]):
            record = export_record(export_folder(model_dir, name))
            gate = record["gate"]
            out.append({"model": str(model_dir), "export": name, "method": record["method"], "rows": gate["rows"],
                        "agreement": gate["agreement"], "f1_fp32": gate["fp32"]["macro_f1"],
                        "f1_export": gate["export"]["macro_f1"], "drop": gate["macro_f1_drop"],
                        "passed": gate["passed"], "precision": gate.get("inference_precision"),
                        "tried": record["tried"]})  # fmt: skip
    return out


def print_gates(rows: list[dict[str, Any]]) -> None:
    print("\n## Accuracy gate of the int8 exports (validation sample kept by training; vs fp32 torch)\n")
    print("| model | export | rung kept | rows | agreement | macro-F1 fp32 -> int8 | drop | passed | rungs tried "
          "(agreement) |\n|---|---|---|--:|--:|--:|--:|---|---|")  # fmt: skip
    for r in rows:
        tried = "; ".join(f"{t['method']} ({t['agreement']:.4f})" for t in r["tried"])
        print(f"| {Path(r['model']).name} | {r['export']} ({r['precision']}) | {r['method']} | {r['rows']} | "
              f"{r['agreement']:.4f} | {r['f1_fp32']:.4f} -> {r['f1_export']:.4f} | {r['drop']:+.4f} | "
              f"{'yes' if r['passed'] else 'no'} | {tried} |")  # fmt: skip
