"""`bertfit explain`: which words pushed each text towards its label (Integrated Gradients)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from bertfit.cli import common
from bertfit.cli.common import Columns, Encoding, ModelDir, Quoting, TextCol, guard, progress, read_options


def explain(
    model_dir: ModelDir,
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

    explanations = guard(
        lambda: run_explain(
            model_dir, texts or None, input_file, text_col or None, label, steps, output, progress=progress(),
            read=read_options(columns, quoting, encoding),
        )
    )  # fmt: skip
    if as_json:
        common.out.print_json(json.dumps([e.to_dict() for e in explanations]))
    elif output:
        common.out.print(f"wrote {len(explanations)} explanations to {escape(str(output))}", highlight=False)
    else:
        for e in explanations:
            _print_explanation(e)


def _print_explanation(e: Any) -> None:
    from bertfit.explain import to_rich

    out = common.out
    predicted = "" if e.label == e.predicted else f" (predicted: {escape(e.predicted)})"
    out.print(f"[bold]{escape(e.label)}[/] {e.score:.3f}{predicted}", highlight=False)
    out.print(to_rich(e))
    out.print("top: " + ", ".join(f"{w} {a:+.3f}" for w, a in e.top(5)), highlight=False, markup=False)
    out.print(
        f"completeness: attributions sum to {sum(e.attributions):+.4f}, logit difference {e.logit_diff:+.4f}, "
        f"delta {e.delta:+.1e}\n",
        highlight=False,
    )
