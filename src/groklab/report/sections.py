"""The section interface: what one kind of study contributes to the report.

A section is a module of ``report/`` with a build function (and usually a test of which
studies it applies to); it is registered by one ``Section`` entry in ``SECTIONS`` in
report/build.py, whose order is the order of the report. ``build.py`` frames every study
(heading, description, run counts, settings) and walks ``SECTIONS``:

- the first *whole* section that applies replaces the standard body of the study (a
  ``groklab tune`` search, a language-model study);
- otherwise every non-whole section that applies is appended in order (the grokking tables
  and figures, curricula), after the standard body's "No finished runs yet." check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from groklab.report.data import StudyData
from groklab.report.document import Block

Build = Callable[[StudyData, Path, Path], tuple[list[Block], list[Path]]]
"""``build(study, root, prefix)``: the section's blocks and the figures it wrote. ``root``
is the store's folder (figure paths in blocks are relative to it); figures go to
``prefix``-*.png, ``prefix`` being ``root/figures/<slug of the study name>``."""


def every_study(study: StudyData) -> bool:
    """``Section.applies`` of a section that every study (of its kind) gets."""
    return True


@dataclass(frozen=True)
class Section:
    """One report section: ``applies(study)`` says whether ``study`` gets it, ``build``
    (see ``Build``) makes it. ``whole``: it replaces the standard body of the study rather
    than being appended to it. ``described``: the study's recorded description opens it
    (a whole section may leave it out, as a search does: its description is Optuna's)."""

    name: str
    applies: Callable[[StudyData], bool]
    build: Build
    whole: bool = False
    described: bool = True


def slug(text: str) -> str:
    """``text`` as a file-name part: runs of other characters than word characters, ``.``
    and ``-`` become ``_``."""
    return re.sub(r"[^\w.-]+", "_", text)
