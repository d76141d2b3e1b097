"""The model-shape flags, defined once for the commands that take them (``run``, ``lm``).

Each is None unless given: the run then has the model's default (``run``) or the size's
(``lm --size``). A model ignores the shape settings it does not read; giving one it ignores
is an error (cli/settings.py, ``refuse_ignored``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

NLayers = Annotated[int | None, typer.Option(
    help="Layers: Transformer and GPT blocks, MLP hidden layers, LSTM layers (default 2; "
    "lm: the size's).")]
DModel = Annotated[int | None, typer.Option(
    help="Width of the token embedding and the residual stream (default 128; lm: the "
    "size's).")]
NHeads = Annotated[int | None, typer.Option(
    help="Attention heads, Transformer and GPT; must divide --d-model (default 4; lm: the "
    "size's).")]
DFF = Annotated[int | None, typer.Option(
    "--d-ff", help="Transformer feed-forward width (default 4 × --d-model).")]
DHidden = Annotated[int | None, typer.Option(help="MLP and LSTM hidden width (default 512).")]
Activation = Annotated[str | None, typer.Option(
    help="MLP activation: relu, gelu or tanh (default relu).")]


def shape_settings(**given: Any) -> dict[str, Any]:
    """The shape flags that were given (not None), as run settings."""
    return {k: v for k, v in given.items() if v is not None}
