"""`bertfit info`: what a model folder holds."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from bertfit.cli import common
from bertfit.cli.common import ModelDir, guard


def info(
    model_dir: ModelDir,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show a model's labels, base model, max length, training metrics and library versions."""
    from bertfit.modeling import describe_model

    details = guard(lambda: describe_model(model_dir))
    if as_json:
        common.out.print_json(json.dumps(details))
        return
    table = Table(title=Text(str(model_dir), style="table.title"), show_header=False)  # Text: never read as markup
    for key, value in details.items():
        table.add_row(key, Text(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)))
    common.out.print(table)
