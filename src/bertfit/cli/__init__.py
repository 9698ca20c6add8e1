"""The `bertfit` command: each subcommand parses options, calls one library function, renders the result.

One module per command; `common` holds what they share, `settings` makes train's options from the config fields.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bertfit.cli import check, curve, evaluate, explain, export, info, predict, review, select, serve, train, tune
from bertfit.cli.common import err, out, setup_logging, state

app = typer.Typer(
    help="Fine-tune BERT-family encoders for text classification, then label millions of texts fast.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts show defaults as [value]; they are not markup
    add_completion=False,
)
for command in (
    check.check,
    train.train,
    tune.tune,
    evaluate.evaluate,
    predict.predict,
    export.export,
    info.info,
    explain.explain,
    serve.serve,
    review.review,
    select.select,
):
    app.command()(command)
app.command("learning-curve")(curve.learning_curve)


@app.callback()
def _global(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks and library logs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only results and errors; no progress bars.")] = False,
) -> None:
    state.update(debug=debug, quiet=quiet)
    setup_logging(debug, quiet)


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "err", "main", "out", "state"]
