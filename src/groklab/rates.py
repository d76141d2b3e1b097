"""Named rate configurations and the text forms of rate and filter settings (a leaf module).

Layer-wise learning rates (docs/protocol.md §5): the named configurations and ``--lr`` text;
Grokfast filters (§6): ``--grad-filter`` text.

A configuration is a rate per group of the default grouping (embedding, lower, higher); a
user's own grouping rules (regex → group) may name any groups (``RunSpec.group_rules`` with
``lr`` as a table of rates per group); ``models.layout.assign_groups`` applies the rules.
"""

from __future__ import annotations

from typing import Any

GROUPS = ("embedding", "lower", "higher")

# (η_embedding, η_lower, η_higher)
LR_CONFIGS: dict[str, tuple[float, float, float]] = {
    "baseline": (1e-3, 1e-3, 1e-3),
    "run0": (1e-3, 1e-3, 1e-3),
    "run1": (1e-4, 1e-3, 1e-2),
    "run2": (5e-4, 1e-3, 2e-3),
    "run3": (7e-4, 1.5e-3, 3e-3),
    "run4": (8e-4, 2e-3, 3e-3),
    "layerwise": (8e-4, 2e-3, 3e-3),
    "tie_e_l": (2e-3, 2e-3, 3e-3),
    "tie_e_h": (3e-3, 2e-3, 3e-3),
    "tie_l_h": (8e-4, 3e-3, 3e-3),
}


def parse_lr(text: str) -> tuple[str | None, tuple[float, float, float]]:
    """``"layerwise"`` or ``"8e-4,2e-3,3e-3"`` (or one rate for all) -> (name or None, triple)."""
    text = text.strip()
    if text in LR_CONFIGS:
        return text, LR_CONFIGS[text]
    parts = [s.strip() for s in text.split(",")]
    try:
        rates = [float(s) for s in parts]
    except ValueError:
        raise ValueError(
            f"--lr {text!r} is neither a configuration ({', '.join(LR_CONFIGS)}) "
            "nor rates 'e,l,h'"
        ) from None
    if len(rates) == 1:
        rates *= 3
    if len(rates) != 3:
        raise ValueError(f"--lr {text!r}: give one rate or three (embedding,lower,higher)")
    if any(not (0 < r < float("inf")) for r in rates):
        raise ValueError(f"--lr {text!r}: learning rates must be positive finite numbers")
    return None, (rates[0], rates[1], rates[2])


# Grokfast's reference amplification for each filter (docs/protocol.md §6)
FILTER_LAMB = {"ema": 2.0, "ma": 5.0}


def parse_grad_filter(text: str) -> dict[str, Any]:
    """``--grad-filter`` text -> settings: ``none``, ``ema[:α[:λ]]`` or ``ma[:W[:λ]]``
    (Grokfast's EMA momentum α and MA window W, amplification λ; docs/protocol.md §6)."""
    kind, *args = [part.strip() for part in text.strip().split(":")]
    usage = f"--grad-filter {text!r}: use none, ema:ALPHA:LAMBDA or ma:WINDOW:LAMBDA"
    if kind not in ("none", "ema", "ma") or len(args) > (0 if kind == "none" else 2):
        raise ValueError(usage)
    out: dict[str, Any] = {"grad_filter": kind}
    try:
        if args:
            out["filter_alpha" if kind == "ema" else "filter_window"] = (
                float(args[0]) if kind == "ema" else int(args[0]))
        if len(args) == 2:
            out["filter_lamb"] = float(args[1])
    except ValueError:
        raise ValueError(usage) from None
    return out


__all__ = ["FILTER_LAMB", "GROUPS", "LR_CONFIGS", "parse_grad_filter", "parse_lr"]
