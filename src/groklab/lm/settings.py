"""Run settings of the character language model (docs/protocol.md §7): sizes and depth-decay
strategies.

``paper`` is docs/protocol.md §7's model and training (a GPU job). ``cpu`` is the default: the
same code at a size whose 3-seed, 4-strategy study (12 runs, one cohort) trains in well under 30
minutes on 2 CPU cores and still learns real text (README, Language model). Both use
nanoGPT's optimiser settings: AdamW with betas (0.9, 0.99), weight decay 0.1 on every
matrix and embedding table (not on norms), gradient clipping at global norm 1.0 per run,
linear warm-up then cosine decay to a tenth of the rate.

A depth-decay strategy is the engine's depth multiplier (docs/protocol.md §5):
``exp:γ`` (η_i = η_0 γ^i), ``linear:r``, ``cosine:r`` or ``none``, on top of the base rate
``lr``, which every group shares (the layer-wise groups of the grokking runs are not used).

The settings themselves (``COMMON``, ``SIZES``, ``BASE_LR``) are defined beside the model,
in models/gpt.py, whose registration names the run ``groklab bench`` times it on.
"""

from __future__ import annotations

from typing import Any

from groklab.models.gpt import BASE_LR, COMMON, SIZES, run_settings

__all__ = ["BASE_LR", "COMMON", "DECAYS", "SIZES", "lm_settings", "parse_lr_decay"]

DECAYS = {"exp": "exponential", "linear": "linear", "cosine": "cosine"}


def parse_lr_decay(text: str) -> tuple[str, dict[str, Any]]:
    """``none``, ``exp:γ``, ``linear:r`` or ``cosine:r`` -> (label, run settings)."""
    kind, _, arg = (part.strip() for part in text.strip().partition(":"))
    usage = (f"--lr-decay {text!r}: use none, exp:GAMMA (e.g. exp:0.8), linear:FLOOR or "
             "cosine:FLOOR (e.g. cosine:0.1)")
    if kind == "none" and not arg:
        return "none", {"lr_depth": "none"}
    if kind not in DECAYS or not arg:
        raise ValueError(usage)
    try:
        value = float(arg)
    except ValueError:
        raise ValueError(usage) from None
    key = "lr_depth_gamma" if kind == "exp" else "lr_depth_floor"
    return f"{kind}:{value:g}", {"lr_depth": DECAYS[kind], key: value}


def lm_settings(size: str = "cpu") -> dict[str, Any]:
    """Every setting of a language-model run of ``size`` but the strategy and seed."""
    if size not in SIZES:
        raise ValueError(f"--size {size!r}: use {' or '.join(SIZES)}")
    return run_settings(size)
