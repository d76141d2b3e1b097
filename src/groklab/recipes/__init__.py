"""Named recipes: bundles of run settings anyone can train by name (docs/protocol.md §6.8).

A recipe is a TOML file in this folder, ``<name>.toml``::

    description = "what it is, in one line"
    origin = "where it came from: the search, its trial, the seeds it was chosen on"
    [settings]              # any run settings (README, Settings); lr as a name or rates
    optimizer = "muon"
    lr = [2e-3, 4e-3, 6e-3]

``groklab run --recipe NAME`` starts from its settings (flags given on the command line
win), and a study takes ``recipe = "NAME"`` in ``[settings]`` or a variant (the table's own
keys win). A leaf module: it reads TOML and nothing of groklab; the settings are validated
where they become runs (``RunSpec``), and tests build every recipe.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

_FOLDER = resources.files("groklab.recipes")


@dataclass(frozen=True)
class Recipe:
    """A named recipe: its settings and where it came from."""

    name: str
    description: str
    origin: str
    settings: Mapping[str, Any] = field(default_factory=dict)


def recipe_names() -> list[str]:
    """Names of the shipped recipes, sorted."""
    return sorted(f.name.removesuffix(".toml") for f in _FOLDER.iterdir()
                  if f.name.endswith(".toml"))


def recipe(name: str) -> Recipe:
    """The recipe ``name`` (``ValueError`` naming the known ones for an unknown name)."""
    names = recipe_names()
    if name not in names:
        raise ValueError(f"unknown recipe {name!r}; known recipes: {', '.join(names)}")
    data = tomllib.loads((_FOLDER / f"{name}.toml").read_text(encoding="utf-8"))
    return Recipe(name, str(data.get("description", "")), str(data.get("origin", "")),
                  dict(data.get("settings", {})))


def with_recipe(table: Mapping[str, Any]) -> dict[str, Any]:
    """``table`` with its ``recipe`` key (if any) replaced by that recipe's settings; the
    table's own keys win."""
    if "recipe" not in table:
        return dict(table)
    name = table["recipe"]
    if not isinstance(name, str):
        raise ValueError(f"recipe: expected a recipe's name, got {name!r}")
    return dict(recipe(name).settings) | {k: v for k, v in table.items() if k != "recipe"}
