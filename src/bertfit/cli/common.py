"""What the commands share: option types, the consoles, `guard` (a user error is one line and exit code 2), the
result tables, and logging."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bertfit.cli.settings import help_of
from bertfit.errors import BertfitError, ConfigError

out = Console()
err = Console(stderr=True)
state = {"debug": False, "quiet": False}

ModelDir = Annotated[Path, typer.Argument(help="Model folder written by 'bertfit train'.")]
CacheDir = Annotated[
    Path | None, typer.Option(help="Where tokenized data is cached [$BERTFIT_CACHE or ~/.cache/bertfit].")
]
ConfigFile = Annotated[Path | None, typer.Option(help="YAML or JSON file of settings; options override it.")]
TextCol = Annotated[list[str] | None, typer.Option("--text-col", help=help_of("text_cols"))]
Pair = Annotated[bool, typer.Option("--pair", help="Sentence pairs: the two --text-col columns are the two texts.")]
Dtype = Annotated[
    str,
    typer.Option(
        "--dtype",
        "--precision",
        help="auto | bf16 | fp16 | fp32 (auto on a CPU: the faster of fp32 and bf16, measured once per model).",
    ),
]
BatchTokens = Annotated[
    int | None, typer.Option(help="Padded tokens per batch; texts are length-sorted [4096 on CPU, 65536 on GPU].")
]
BatchSize = Annotated[int | None, typer.Option(help="At most this many texts per batch [no limit].")]
AllowPickle = Annotated[
    bool, typer.Option(help="Load pickle weights (pytorch_model.bin) you trust; unpickling can run code.")
]
LongOverride = Annotated[str | None, typer.Option("--long", help="truncate | head-tail | sliding [as in training].")]
StrideOverride = Annotated[int | None, typer.Option("--stride", help="Sliding: tokens shared [as in training].")]
AggregateOverride = Annotated[str | None, typer.Option("--aggregate", help="Sliding: mean | max [as in training].")]
Threshold = Annotated[
    float | None, typer.Option(help="Multi-label: one threshold for every label [the per-label tuned ones].")
]
Columns = Annotated[str | None, typer.Option("--columns", help=help_of("columns"))]
Quoting = Annotated[str | None, typer.Option(help=help_of("quoting"))]
Encoding = Annotated[str | None, typer.Option(help=help_of("encoding"))]
EngineOption = Annotated[
    str,
    typer.Option(
        help="auto | torch | onnx | openvino (auto: the folder's own; onnx/openvino: a 'bertfit export' folder)."
    ),
]
NoCalibration = Annotated[
    bool,
    typer.Option("--no-calibration", help="Plain softmax scores, without the temperature fitted in training."),
]


def guard(call: Any, interrupted: str = "interrupted; nothing was written") -> Any:
    """Run a library call; a BertfitError becomes one line on stderr and exit code 2."""
    try:
        return call()
    except BertfitError as error:
        if state["debug"]:
            raise
        err.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)  # not markup
        raise typer.Exit(code=error.exit_code) from None
    except KeyboardInterrupt:
        err.print(interrupted)
        raise typer.Exit(code=130) from None


def refuse(message: str) -> None:
    """Stop with a user error (one line, exit code 2)."""

    def fail() -> None:
        raise ConfigError(message)

    guard(fail)


def progress() -> bool:
    return not state["quiet"] and sys.stderr.isatty()


def read_options(columns: str | None, quoting: str | None, encoding: str | None, allow_pickle: bool = False) -> Any:
    """--columns, --quoting, --encoding and --allow-pickle as io.ReadOptions (defaults where not given)."""
    from bertfit.data.io import ReadOptions
    from bertfit.data.textfiles import parse_columns

    return ReadOptions(parse_columns(columns), quoting or "auto", encoding or "utf-8", allow_pickle)


def pair_settings(settings: dict[str, Any], pair: bool) -> dict[str, Any]:
    """The settings with --pair applied: the two --text-col columns become text_cols and pair_col."""
    text_cols = settings.get("text_cols") or []
    if not pair:
        return settings
    if settings.get("pair_col") or len(text_cols) != 2:
        refuse("--pair takes exactly two --text-col columns (or use --text-col A --pair-col B)")
    return {**settings, "text_cols": [text_cols[0]], "pair_col": text_cols[1]}


HEADLINE_SHOWN = ("accuracy", "macro_f1", "micro_f1", "mcc")


def metrics_table(report: dict[str, Any], title: str) -> None:
    table = Table(title=Text(title, style="table.title"))  # Text: names and paths as written, never read as markup
    multi = report.get("problem_type") == "multi_label_classification"
    columns = ("label", "precision", "recall", "f1", "support", *(("threshold",) if multi else ()))
    for col in columns:
        table.add_column(col, justify="left" if col == "label" else "right")
    for name, c in report["per_class"].items():
        cells = [f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", str(c["support"])]
        table.add_row(Text(name), *cells, *([f"{c['threshold']:.2f}"] if multi else []))
    out.print(table)
    shown = ("micro_f1", "macro_f1", "samples_f1", "accuracy", "hamming_loss") if multi else HEADLINE_SHOWN
    out.print("  ".join(f"{'subset_accuracy' if multi and k == 'accuracy' else k} {report[k]:.4f}" for k in shown))


def findings_table(report: Any) -> None:
    styles = {"error": "bold red", "warning": "yellow", "info": "dim"}
    table = Table(title="data check")
    for col in ("severity", "check", "split", "count"):
        table.add_column(col, justify="right" if col == "count" else "left", no_wrap=True)
    table.add_column("message", overflow="fold")
    for f in report.findings:
        message = Text(f.message + "".join(f"\n  e.g. {e}" for e in f.examples[:1]))
        table.add_row(Text(f.severity, style=styles[f.severity]), f.code, Text(f.split), f"{f.count:,}", message)
    out.print(table)
    splits = report.stats["splits"]
    rows = "; ".join(f"{name} {s['usable_rows']:,} of {s['rows']:,} rows usable" for name, s in splits.items())
    out.print(rows, highlight=False)
    out.print(f"{len(report.errors)} errors, {len(report.warnings)} warnings", highlight=False)


def setup_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("bertfit")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if not debug:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
        if "transformers" in sys.modules:  # imported already (a caller of the CLI in Python): set it directly
            import transformers

            transformers.logging.set_verbosity_error()
            transformers.logging.disable_progress_bar()
        else:  # read when it is imported, by a command that needs it: an error about the input comes before that
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # what disable_progress_bar() would set
        import warnings

        warnings.filterwarnings("ignore")
