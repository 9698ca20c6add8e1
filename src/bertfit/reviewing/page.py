"""review.html: the review at a glance: counts, per-class issues, the estimated noise matrix and the top issues."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bertfit.data.rows import shown_text
from bertfit.data.write import atomic_path
from bertfit.reviewing.rows import ReviewRows
from bertfit.templates import render_html

TOP = 100  # rows shown on the page; the table holds all


def write_page(path: Path, rows: ReviewRows, table: pd.DataFrame, summary: dict[str, Any]) -> None:
    texts = dict(zip(rows.positions.tolist(), rows.texts))
    top = table[table["is_label_issue"]].head(TOP)
    shown = [{"row": int(r.row), "text": shown_text(texts[int(r.row)]), "given": r.given_label,
              "suggested": r.suggested_label, "quality": float(r.label_quality),
              "flags": _flags(r)} for r in top.itertuples(index=False)]  # fmt: skip
    noise = summary.get("noise_matrix")
    html = render_html("review.html", summary=summary, issues=shown, noise=noise, source=rows.source)
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")


def _flags(row: Any) -> list[str]:
    return [name for name in ("conflicting_duplicate", "ambiguous", "outlier") if bool(getattr(row, name))]
