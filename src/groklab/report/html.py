"""Render report blocks as one self-contained HTML page: images embedded, no server needed.

A figure with an interactive twin (``Figure.interactive``, report/interactive.py) is drawn
by plotly.js, which the page carries inline once, before its first such figure; the PNG
stays in the page for readers without scripts (``<noscript>``). Nothing is fetched."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from groklab.report.document import Block, Code, Figure, Heading, Paragraph, Table, table_rows

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f2f2f2; }
caption { font-weight: bold; text-align: left; padding-bottom: 0.3em; }
figure { margin: 1em 0; } figure img { max-width: 100%; }
figcaption { color: #555; font-style: italic; }
figure.interactive { border-top: 1px solid #eee; padding-top: 0.5em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
.note { color: #555; font-size: 0.9em; }
"""


def _inline(text: str) -> str:
    """Text with its `code` spans (the one Markdown it may hold) as HTML ``<code>``."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _plain(text: str) -> str:
    """Text without Markdown, for attributes (an image's alt text)."""
    return html.escape(text.replace("`", ""))


def _table(b: Table) -> str:
    header, body = table_rows(b.frame)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in body)
    caption = f"<caption>{_inline(b.caption)}</caption>" if b.caption else ""
    notes = b.note.split("\n\n") if b.note else []
    note = "".join(f'<p class="note">{_inline(n)}</p>' for n in notes)
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{note}"


PLOT_CONFIG = {"displaylogo": False, "responsive": True,
               "toImageButtonOptions": {"format": "png", "scale": 2}}


def _image(b: Figure, root: Path) -> str:
    data = base64.b64encode((root / b.path).read_bytes()).decode("ascii")
    return f'<img alt="{_plain(b.caption)}" src="data:image/png;base64,{data}">'


def _figure(b: Figure, root: Path, number: int, first_plot: bool) -> str:
    """A PNG figure, or an interactive one (``number``: its place in the page, for a stable
    element id; ``first_plot``: it carries plotly.js)."""
    caption = f"<figcaption>{_inline(b.caption)}</figcaption>"
    if b.interactive is None:
        return f"<figure>{_image(b, root)}{caption}</figure>"
    import plotly.io as pio

    from groklab.report.interactive import NOTE

    height = b.interactive.get("layout", {}).get("height", 450)
    plot = pio.to_html(b.interactive, config=PLOT_CONFIG, include_plotlyjs=first_plot,
                       full_html=False, validate=False, div_id=f"figure-{number}",
                       default_width="100%", default_height=f"{height}px")
    return (f'<figure class="interactive">{plot}<noscript>{_image(b, root)}</noscript>'
            f'{caption}<p class="note">{html.escape(NOTE)}</p></figure>')


def to_html(blocks: list[Block], root: Path, title: str) -> str:
    """One HTML page; figures are read from ``root`` and embedded as base64 PNG, or drawn by
    the page's own copy of plotly.js where they have an interactive twin."""
    parts = []
    plots = 0
    for number, b in enumerate(blocks):
        if isinstance(b, Heading):
            parts.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            parts.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            parts.append(_table(b))
        elif isinstance(b, Figure):
            parts.append(_figure(b, root, number, first_plot=plots == 0))
            plots += b.interactive is not None
        elif isinstance(b, Code):
            parts.append(f"<pre>{html.escape(b.text)}</pre>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")
