"""Figures for the PNGs bertfit writes (report, training curve, learning curve, tune trials), drawn without pyplot:
no global backend switch (a notebook's inline backend stays as it was) and no figure registry that a long-running
process (serve, tune, a notebook) keeps filling."""

from __future__ import annotations

from typing import Any


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Any:
    """A matplotlib Figure of this size (inches) on its own Agg canvas, ready for `savefig`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig
