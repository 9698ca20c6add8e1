"""The page and card templates (Jinja2) shipped in this folder, and the two environments that render them.

HTML templates are autoescaped: every value from the data (label names, texts, titles) is shown as written. The
model card is Markdown, where HTML escaping is wrong; its template escapes data values with the `md` filter.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

_OPTIONS = {"loader": PackageLoader("bertfit", "templates"), "undefined": StrictUndefined, "trim_blocks": True,
            "lstrip_blocks": True, "keep_trailing_newline": True}  # fmt: skip
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|$~&])")


def markdown_text(text: Any) -> str:
    """Text from the data (label and column names) shown as written in Markdown: characters that inline syntax or a
    table reads ('|', '$', '*', '[', '<', ...) are backslash-escaped, line breaks become spaces."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", re.sub(r"[\r\n]+", " ", str(text)))


HTML = Environment(autoescape=True, **_OPTIONS)
MARKDOWN = Environment(autoescape=False, **_OPTIONS)
MARKDOWN.filters["md"] = markdown_text


def render_html(name: str, **context: Any) -> str:
    """An HTML template of this folder, every value autoescaped."""
    return HTML.get_template(name).render(**context)


def render_markdown(name: str, **context: Any) -> str:
    """A Markdown template of this folder (data values go through its `md` filter)."""
    return MARKDOWN.get_template(name).render(**context)
