"""The `bertfit` command: each subcommand parses options, calls one library function, renders the result."""

from __future__ import annotations

import contextlib
import json
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

from bertfit.errors import BertfitError

app = typer.Typer(
    help="Fine-tune BERT-family encoders for text classification, then label millions of texts fast.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts show defaults as [value]; they are not markup
    add_completion=False,
)
out = Console()
err = Console(stderr=True)
state = {"debug": False, "quiet": False}

TextCol = Annotated[list[str] | None, typer.Option("--text-col", help="Text column; repeat to join several columns.")]
Dtype = Annotated[
    str,
    typer.Option("--dtype", "--precision", help="auto | bf16 | fp16 | fp32 (auto: bf16 on AMX CPUs and new GPUs)."),
]
BatchTokens = Annotated[
    int | None, typer.Option(help="Padded tokens per batch; texts are length-sorted [4096 on CPU, 65536 on GPU].")
]
BatchSize = Annotated[int | None, typer.Option(help="At most this many texts per batch [no limit].")]
AllowPickle = Annotated[
    bool, typer.Option(help="Load pickle weights (pytorch_model.bin) you trust; unpickling can run code.")
]
PairCol = Annotated[
    str | None, typer.Option(help="Sentence pairs: column of each row's second text (encoded as segment B).")
]
Pair = Annotated[bool, typer.Option("--pair", help="Sentence pairs: the two --text-col columns are the two texts.")]
MultiLabel = Annotated[
    bool, typer.Option("--multi-label", help="Each row has a set of labels (lists, or strings split on --label-sep).")
]
LabelSep = Annotated[
    str | None, typer.Option(help="Multi-label: the separator between a row's labels ['admiration,joy': ','].")
]
Long = Annotated[
    str | None,
    typer.Option(help="Texts over max length: truncate | head-tail | sliding (overlapping windows) [truncate]."),
]
Stride = Annotated[int | None, typer.Option(help="Sliding windows: tokens shared by neighbours [max length / 4].")]
Aggregate = Annotated[str | None, typer.Option(help="Sliding windows: mean | max of window logits [mean].")]
LongOverride = Annotated[str | None, typer.Option("--long", help="truncate | head-tail | sliding [as in training].")]
StrideOverride = Annotated[int | None, typer.Option("--stride", help="Sliding: tokens shared [as in training].")]
AggregateOverride = Annotated[str | None, typer.Option("--aggregate", help="Sliding: mean | max [as in training].")]
Threshold = Annotated[
    float | None, typer.Option(help="Multi-label: one threshold for every label [the per-label tuned ones].")
]
Columns = Annotated[
    str | None,
    typer.Option("--columns", help="A CSV/TSV without a header row: its column names in order, e.g. 'label,text'."),
]
Quoting = Annotated[
    str | None,
    typer.Option(help="CSV/TSV quoting: auto | csv | none [auto: CSV quotes; TSV only if the file shows quoting]."),
]
Encoding = Annotated[str | None, typer.Option(help="Text encoding of CSV/TSV/JSON Lines input [utf-8].")]
NoCalibration = Annotated[
    bool,
    typer.Option("--no-calibration", help="Plain softmax scores, without the temperature fitted in training."),
]


@app.callback()
def _global(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks and library logs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only results and errors; no progress bars.")] = False,
) -> None:
    state.update(debug=debug, quiet=quiet)
    _setup_logging(debug, quiet)


@app.command()
def check(
    data: Annotated[Path, typer.Argument(help="Labelled training data: a file or a folder of shards.")],
    validation: Annotated[
        Path | None, typer.Option(help="Labelled validation data, also checked for leakage from DATA.")
    ] = None,
    test: Annotated[
        Path | None, typer.Option(help="Labelled test data, also checked for leakage from DATA and --validation.")
    ] = None,
    text_col: TextCol = None,
    label_col: Annotated[str | None, typer.Option(help="Label column [label].")] = None,
    label_map: Annotated[str | None, typer.Option(help="Rename labels: '1=negative,2=positive'.")] = None,
    pair_col: PairCol = None,
    pair: Pair = False,
    multi_label: MultiLabel = False,
    label_sep: LabelSep = None,
    model: Annotated[
        str | None, typer.Option(help="Model whose tokenizer measures lengths: hub id or folder [all-MiniLM-L6-v2].")
    ] = None,
    max_length: Annotated[int | None, typer.Option(help="Max tokens per text, as in training [128].")] = None,
    min_class_rows: Annotated[int, typer.Option(help="Report classes with fewer training rows than this.")] = 10,
    columns: Columns = None,
    quoting: Quoting = None,
    encoding: Encoding = None,
    allow_pickle: Annotated[bool, typer.Option(help="Read HDF5 files with pickled columns you trust.")] = False,
    config: Annotated[Path | None, typer.Option(help="YAML or JSON file of settings; options override it.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check labelled data before training: leakage, duplicates, conflicting labels, classes, lengths, encoding.

    Errors (exit code 1) make a model or its scores untrustworthy: fewer than two classes, a label column that
    holds text, validation/test labels missing from train, no usable rows, more than 1% of validation or test
    rows whose exact text is also in train. Warnings cost quality: empty texts, missing labels, conflicting or
    many duplicates, smaller leakage, tiny classes, imbalance of 10x or more, shards of one label, more than 5%
    of texts cut at max length, replacement characters, mojibake, control characters. Info: columns, label
    distribution, token lengths (measured on a sample of at most 100,000 rows per split).
    """
    from bertfit.checks.checker import check as run_check
    from bertfit.config import RunConfig, load_config

    def call() -> Any:
        base = load_config(config) if config else RunConfig()
        overrides = dict(
            label_col=label_col, label_map=label_map, model=model, max_length=max_length,
            multi_label=multi_label or None, label_sep=label_sep, **_text_settings(text_col, pair_col, pair),
            columns=columns, quoting=quoting, encoding=encoding, allow_pickle=allow_pickle or None,
        )  # fmt: skip
        return run_check(data, validation, test, base, min_class_rows=min_class_rows, progress=_progress(), **overrides)

    report = _guard(call)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        _findings_table(report)
    if report.errors:
        raise typer.Exit(code=1)


@app.command()
def train(
    train_file: Annotated[
        Path, typer.Argument(help="Labelled data: csv, tsv, jsonl, parquet, h5 or xlsx, or a folder of shards.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")],
    validation: Annotated[Path | None, typer.Option(help="Labelled validation file (else split off).")] = None,
    val_fraction: Annotated[float | None, typer.Option(help="Share split off for validation [0.1].")] = None,
    text_col: TextCol = None,
    label_col: Annotated[str | None, typer.Option(help="Label column [label].")] = None,
    model: Annotated[str | None, typer.Option(help="Base model: hub id or folder [all-MiniLM-L6-v2].")] = None,
    epochs: Annotated[float | None, typer.Option(help="Training epochs [3].")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size [32].")] = None,
    lr: Annotated[
        float | None, typer.Option(help="Peak learning rate [2e-4 for up to 3,000 optimizer steps, 1e-4 beyond].")
    ] = None,
    max_length: Annotated[int | None, typer.Option(help="Max tokens per text [128].")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed [42].")] = None,
    label_map: Annotated[str | None, typer.Option(help="Rename labels: '1=negative,2=positive'.")] = None,
    pair_col: PairCol = None,
    pair: Pair = False,
    multi_label: MultiLabel = False,
    label_sep: LabelSep = None,
    thresholds: Annotated[
        str | None, typer.Option(help="Multi-label: tuned (per label, on validation) | global (0.5) [tuned].")
    ] = None,
    long: Long = None,
    stride: Stride = None,
    aggregate: Aggregate = None,
    scheduler: Annotated[str | None, typer.Option(help="linear | exponential decay after warmup.")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Gradient accumulation steps [1].")] = None,
    best_metric: Annotated[str | None, typer.Option(help="macro_f1 | micro_f1 | accuracy | mcc | loss.")] = None,
    precision: Annotated[str | None, typer.Option(help="auto | bf16 | fp16 | fp32.")] = None,
    warmup: Annotated[float | None, typer.Option(help="Share of steps spent warming up [0.1].")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay [0.01].")] = None,
    class_weights: Annotated[
        str | None, typer.Option(help="none | auto (inverse class frequency) | a JSON/YAML file of label: weight.")
    ] = None,
    patience: Annotated[int | None, typer.Option(help="Stop after N epochs without improvement [0: off].")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N optimizer steps [0: all epochs].")] = None,
    save_every: Annotated[
        str | None, typer.Option(help="Checkpoint every N steps ('500') or minutes ('30m') [epoch].")
    ] = None,
    keep_checkpoints: Annotated[int | None, typer.Option(help="Newest checkpoints kept for resuming [2].")] = None,
    resume: Annotated[
        bool | None,
        typer.Option(
            "--resume/--restart",
            help="Continue the interrupted run into --output, or start over [continue when possible].",
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Where tokenized data is cached [$BERTFIT_CACHE or ~/.cache/bertfit].")
    ] = None,
    report_to: Annotated[
        str | None,
        typer.Option(help="auto | none | tensorboard | other Trainer loggers [auto: TensorBoard if installed]."),
    ] = None,
    columns: Columns = None,
    quoting: Quoting = None,
    encoding: Encoding = None,
    config: Annotated[Path | None, typer.Option(help="YAML or JSON file of settings; options override it.")] = None,
    allow_pickle: Annotated[
        bool, typer.Option(help="Allow pickle (.bin) weights and pickled HDF5 columns you trust.")
    ] = False,
    trust_remote_code: Annotated[bool, typer.Option(help="Run model code from the hub (only if trusted).")] = False,
    overwrite: Annotated[
        bool,
        typer.Option(help="No effect (old scripts): a bertfit model or empty folder is replaced, any other refused."),
    ] = False,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Skip the data checks ('bertfit check') that run before training.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Fine-tune a model on labelled data and write a Hugging Face model folder.

    The data is checked first (see 'bertfit check'): errors stop the run, warnings are shown and saved with the model.
    """
    from bertfit.config import RunConfig, load_config
    from bertfit.training.run import train as run_train

    def call() -> Any:
        from bertfit.data.io import check_folder_writable
        from bertfit.data.paths import check_not_input

        check_not_input(output, [config], "--output folder")  # the library checks the data and model it reads
        check_folder_writable(output)  # fail now, not after tokenizing and training, when the model is written
        base = load_config(config) if config else RunConfig()
        overrides = dict(
            **_text_settings(text_col, pair_col, pair),
            multi_label=multi_label or None,
            label_sep=label_sep,
            thresholds=thresholds,
            long=long,
            stride=stride,
            aggregate=aggregate,
            label_col=label_col,
            val_fraction=val_fraction,
            model=model,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            max_length=max_length,
            seed=seed,
            label_map=label_map,
            scheduler=scheduler,
            grad_accum=grad_accum,
            best_metric=best_metric,
            precision=precision,
            warmup=warmup,
            weight_decay=weight_decay,
            class_weights=class_weights,
            patience=patience,
            max_steps=max_steps,
            save_every=save_every,
            keep_checkpoints=keep_checkpoints,
            report_to=report_to,
            columns=columns,
            quoting=quoting,
            encoding=encoding,
            allow_pickle=allow_pickle or None,
            trust_remote_code=trust_remote_code or None,
        )
        return run_train(
            train_file,
            output,
            validation,
            config=base,
            overwrite=overwrite,
            progress=_progress(),
            cache_dir=cache_dir,
            resume=resume,
            check=not no_check,
            **overrides,
        )

    result = _guard(call, "interrupted; run the same command again to continue from the last checkpoint")
    if os.environ.get("RANK", "0") != "0":  # under torchrun / accelerate launch the first process reports
        return
    summary = {
        "model_dir": str(result.model_dir),
        "train_rows": result.train_rows,
        "val_rows": result.val_rows,
        "train_seconds": round(result.train_seconds, 1),
        "resumed_from_step": result.resumed_from_step,
        "labels": result.labels,
        **{
            k: result.metrics[k]
            for k in ("accuracy", "macro_f1", "micro_f1", "mcc", "samples_f1")
            if k in result.metrics
        },
    }
    if as_json:
        out.print_json(json.dumps(summary))
        return
    _metrics_table(result.metrics, f"validation ({result.val_rows} rows)")
    where = escape(str(result.model_dir))
    out.print(f"model: {where}  ({result.train_rows} training rows, {result.train_seconds:.0f}s)")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Model folder written by 'bertfit train'.")],
    data_file: Annotated[Path, typer.Argument(help="Labelled data to score.")],
    text_col: TextCol = None,
    label_col: Annotated[str | None, typer.Option(help="Label column [as in training].")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the full report as JSON.")] = None,
    batch_tokens: BatchTokens = None,
    batch_size: BatchSize = None,
    dtype: Dtype = "auto",
    report_dir: Annotated[
        Path | None, typer.Option("--report", help="Write report.html with its plots into this folder.")
    ] = None,
    no_calibration: NoCalibration = False,
    allow_pickle: AllowPickle = False,
    long: LongOverride = None,
    stride: StrideOverride = None,
    aggregate: AggregateOverride = None,
    threshold: Threshold = None,
    columns: Columns = None,
    quoting: Quoting = None,
    encoding: Encoding = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Score a trained model on labelled data: accuracy, F1, MCC, calibration error, per-class report, confusion
    matrix; with --report, an HTML report with plots."""
    from bertfit.evaluation.evaluate import evaluate as run_evaluate

    report = _guard(
        lambda: run_evaluate(
            model_dir, data_file, text_col or None, label_col, output, batch_tokens, batch_size, dtype, _progress(),
            report=report_dir, calibration=not no_calibration, allow_pickle=allow_pickle, long=long, stride=stride,
            aggregate=aggregate, threshold=threshold, read=_read_options(columns, quoting, encoding, allow_pickle),
        )
    )  # fmt: skip
    if as_json:
        out.print_json(json.dumps(report))
        return
    _metrics_table(report, f"{data_file} ({report['n']} rows)")
    if "ece" in report:
        out.print(
            f"expected calibration error {report['ece']:.4f} (uncalibrated {report['ece_uncalibrated']:.4f}, "
            f"temperature {report['temperature']:.3f})",
            highlight=False,
        )
    if output:
        out.print(f"metrics: {escape(str(output))}")
    if report_dir:
        out.print(f"report: {escape(str(report_dir / 'report.html'))}")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Model folder written by 'bertfit train'.")],
    input_file: Annotated[Path, typer.Argument(help="Table with a text column, or a folder of shards.")],
    output_file: Annotated[
        Path, typer.Argument(help="Where to write; the format follows the extension; no extension: a folder.")
    ],
    text_col: TextCol = None,
    probs: Annotated[bool, typer.Option("--probs", help="Add a prob_<label> column per label.")] = False,
    dtype: Dtype = "auto",
    batch_tokens: BatchTokens = None,
    batch_size: BatchSize = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens kept per text [as in training].")] = None,
    window: Annotated[
        int | None, typer.Option(help="Rows read, sorted and committed together [50000; ray: 10000 per call].")
    ] = None,
    compile: Annotated[
        bool, typer.Option("--compile", help="torch.compile the model (~30 s; pays off on big inputs).")
    ] = False,
    engine: Annotated[str, typer.Option(help="local | ray.")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address [start a local one].")] = None,
    num_workers: Annotated[int | None, typer.Option(help="Ray: model replicas [one per CPU core or GPU].")] = None,
    gpus_per_worker: Annotated[float, typer.Option(help="Ray: GPUs per replica [0].")] = 0.0,
    no_calibration: NoCalibration = False,
    allow_pickle: AllowPickle = False,
    long: LongOverride = None,
    stride: StrideOverride = None,
    aggregate: AggregateOverride = None,
    threshold: Threshold = None,
    columns: Columns = None,
    quoting: Quoting = None,
    encoding: Encoding = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Label every row of a file; the output keeps all input columns and rows, plus pred_label and pred_score
    (multi-label models: pred_labels and a prob_<label> column per label). Long texts give one row each.

    Rerunning the same command after a crash continues where it stopped.
    """
    if engine not in ("local", "ray"):
        _guard(lambda: _bad_choice("engine", engine, "local, ray"))
    if engine == "ray" and allow_pickle:
        _guard(lambda: _refuse("--allow-pickle works with --engine local only; convert the model to safetensors"))
    with contextlib.ExitStack() as held:
        # Locked before an engine is imported (torch alone takes seconds): a second run into this output refuses at
        # once. The engine checks again and takes the same lock again, a no-op in the same thread.
        from bertfit.data.paths import check_not_input, model_files
        from bertfit.prediction.parts import OutputLock

        _guard(lambda: check_not_input(output_file, [input_file, *model_files(model_dir)]))
        _guard(lambda: held.enter_context(OutputLock(output_file)))
        if engine == "ray":
            from bertfit.prediction.ray_engine import predict_with_ray

            summary = _guard(
                lambda: predict_with_ray(
                    model_dir, input_file, output_file, text_col or None, probs, dtype, batch_tokens, batch_size,
                    max_length, address, num_workers, gpus_per_worker, _progress(), window=window, compile=compile,
                    calibration=not no_calibration, read=_read_options(columns, quoting, encoding), long=long,
                    stride=stride, aggregate=aggregate, threshold=threshold,
                )
            )  # fmt: skip
        else:
            from bertfit.prediction.classifier import DEFAULT_WINDOW, predict_file

            summary = _guard(
                lambda: predict_file(
                    model_dir, input_file, output_file, text_col or None, probs, dtype, batch_tokens, batch_size,
                    max_length, window or DEFAULT_WINDOW, compile, _progress(), calibration=not no_calibration,
                    allow_pickle=allow_pickle, long=long, stride=stride, aggregate=aggregate, threshold=threshold,
                    read=_read_options(columns, quoting, encoding, allow_pickle),
                )
            )  # fmt: skip
    if as_json:
        out.print_json(json.dumps(summary))
        return
    extra = [f"{summary['rows_per_s']:.0f} rows/s"] if "rows_per_s" in summary else []
    extra += [f"{summary[k]} {k.replace('_', ' ')}" for k in ("empty_text", "truncated") if summary.get(k)]
    if summary.get("resumed_rows"):
        extra.append(f"resumed after {summary['resumed_rows']} rows")
    out.print(f"wrote {summary['rows']} rows to {escape(str(summary['output']))} ({'; '.join(extra)})", highlight=False)


def _read_options(columns: str | None, quoting: str | None, encoding: str | None, allow_pickle: bool = False) -> Any:
    """--columns, --quoting, --encoding and --allow-pickle as io.ReadOptions (defaults where not given)."""
    from bertfit.data.io import ReadOptions, parse_columns

    return ReadOptions(parse_columns(columns), quoting or "auto", encoding or "utf-8", allow_pickle)


def _text_settings(text_col: list[str] | None, pair_col: str | None, pair: bool) -> dict[str, Any]:
    """text_cols and pair_col from --text-col, --pair-col and --pair (the two --text-col columns as a pair)."""
    if not pair:
        return {"text_cols": text_col or None, "pair_col": pair_col}
    if pair_col or len(text_col or []) != 2:
        _guard(lambda: _refuse("--pair takes exactly two --text-col columns (or use --text-col A --pair-col B)"))
    return {"text_cols": [text_col[0]], "pair_col": text_col[1]}


def _bad_choice(option: str, value: str, choices: str) -> None:
    from bertfit.errors import ConfigError

    raise ConfigError(f"--{option} must be one of {choices} (got '{value}')")


def _refuse(message: str) -> None:
    from bertfit.errors import ConfigError

    raise ConfigError(message)


@app.command()
def info(
    model_dir: Annotated[Path, typer.Argument(help="Model folder written by 'bertfit train'.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show a model's labels, base model, max length, training metrics and library versions."""
    from bertfit.modeling import describe_model

    details = _guard(lambda: describe_model(model_dir))
    if as_json:
        out.print_json(json.dumps(details))
        return
    table = Table(title=Text(str(model_dir), style="table.title"), show_header=False)  # Text: never read as markup
    for key, value in details.items():
        table.add_row(key, Text(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)))
    out.print(table)


@app.command()
def explain(
    model_dir: Annotated[Path, typer.Argument(help="Model folder written by 'bertfit train'.")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to explain (or --input).")] = None,
    input_file: Annotated[Path | None, typer.Option("--input", help="A table of texts to explain.")] = None,
    text_col: TextCol = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write one HTML page with every text highlighted.")
    ] = None,
    label: Annotated[str | None, typer.Option(help="Label to explain [each text's predicted label].")] = None,
    steps: Annotated[int, typer.Option(help="Integration steps: more make the sums closer, and take longer.")] = 50,
    columns: Columns = None,
    quoting: Quoting = None,
    encoding: Encoding = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the explanations as JSON.")] = False,
) -> None:
    """Show which words pushed each text towards its label (Integrated Gradients; needs bertfit[explain]).

    Green words raise the label's score, red ones lower it; the stronger the colour, the larger the effect.
    """
    from bertfit.explain import explain as run_explain

    explanations = _guard(
        lambda: run_explain(
            model_dir,
            texts or None,
            input_file,
            text_col or None,
            label,
            steps,
            output,
            progress=_progress(),
            read=_read_options(columns, quoting, encoding),
        )
    )
    if as_json:
        out.print_json(json.dumps([e.to_dict() for e in explanations]))
    elif output:
        out.print(f"wrote {len(explanations)} explanations to {escape(str(output))}", highlight=False)
    else:
        for e in explanations:
            _print_explanation(e)


def _print_explanation(e: Any) -> None:
    from bertfit.explain import to_rich

    predicted = "" if e.label == e.predicted else f" (predicted: {escape(e.predicted)})"
    out.print(f"[bold]{escape(e.label)}[/] {e.score:.3f}{predicted}", highlight=False)
    out.print(to_rich(e))
    out.print("top: " + ", ".join(f"{w} {a:+.3f}" for w, a in e.top(5)), highlight=False, markup=False)
    out.print(
        f"completeness: attributions sum to {sum(e.attributions):+.4f}, logit difference {e.logit_diff:+.4f}, "
        f"delta {e.delta:+.1e}\n",
        highlight=False,
    )


def main() -> None:
    """Console-script entry point."""
    app()


def _guard(call: Any, interrupted: str = "interrupted; nothing was written") -> Any:
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


def _progress() -> bool:
    return not state["quiet"] and sys.stderr.isatty()


HEADLINE_SHOWN = ("accuracy", "macro_f1", "micro_f1", "mcc")


def _metrics_table(report: dict[str, Any], title: str) -> None:
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


def _findings_table(report: Any) -> None:
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


def _setup_logging(debug: bool, quiet: bool) -> None:
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
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        import warnings

        warnings.filterwarnings("ignore")
