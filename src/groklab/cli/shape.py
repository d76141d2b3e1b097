"""The model-shape flags, made once from their settings' declarations (cli/flags.py) for the
commands that take them (``run``, ``lm``).

Each is None unless given: the run then has the model's default (``run``) or the size's
(``lm --size``). A model ignores the shape settings it does not read; giving one it ignores
is an error (cli/settings.py, ``refuse_ignored``)."""

from __future__ import annotations

from typing import Any

from groklab.cli.flags import shared_option

LM = "; lm: the size's"  # `groklab lm` takes its size's value instead
NLayers = shared_option("n_layers", LM)
DModel = shared_option("d_model", LM)
NHeads = shared_option("n_heads", LM)
DFF = shared_option("d_ff")
DHidden = shared_option("d_hidden")
Activation = shared_option("activation")


def shape_settings(**given: Any) -> dict[str, Any]:
    """The shape flags that were given (not None), as run settings."""
    return {k: v for k, v in given.items() if v is not None}
