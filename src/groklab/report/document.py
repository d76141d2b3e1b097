"""A report as a list of plain blocks, rendered to Markdown here and to HTML in ``html.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str  # `code` spans allowed


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame  # the index is the first column
    caption: str = ""
    note: str | None = None  # paragraphs separated by blank lines; `code` spans allowed


@dataclass(frozen=True)
class Figure:
    path: str  # relative to the report's folder
    caption: str
    # report.html draws this plotly figure (report/interactive.py) in place of the PNG
    interactive: dict[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class Code:
    text: str


Block = Heading | Paragraph | Table | Figure | Code


def table_rows(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and body cells as text, the index first."""
    header = [str(frame.index.name or ""), *map(str, frame.columns)]
    body = [[str(i), *map(str, row)] for i, row in zip(frame.index, frame.values, strict=True)]
    return header, body


def _md_cell(text: str) -> str:
    return text.replace("|", r"\|").replace("*", r"\*")


def to_markdown(blocks: list[Block]) -> str:
    """GitHub-flavoured Markdown."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Paragraph):
            out.append(b.text)
        elif isinstance(b, Table):
            header, body = table_rows(b.frame)
            lines = [f"**{b.caption}**", ""] if b.caption else []
            lines += ["| " + " | ".join(map(_md_cell, header)) + " |",
                      "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in body]
            if b.note:
                lines += ["", _md_cell(b.note)]
            out.append("\n".join(lines))
        elif isinstance(b, Figure):
            out.append(f"![{b.caption}]({b.path})\n\n*{b.caption}*")
        elif isinstance(b, Code):
            out.append(f"```\n{b.text}\n```")
    return "\n\n".join(out) + "\n"
