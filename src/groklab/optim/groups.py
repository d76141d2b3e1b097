"""Layer-wise learning rates (docs/protocol.md §5): the named configurations and ``--lr`` text.

A configuration is a rate per group of the default grouping (embedding, lower, higher); a
user's own grouping rules (regex → group) may name any groups (``RunSpec.group_rules`` with
``lr`` as a table of rates per group); ``optim.layout.assign_groups`` applies the rules.
"""

from __future__ import annotations

from groklab.optim.layout import assign_groups

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


__all__ = ["GROUPS", "LR_CONFIGS", "assign_groups", "parse_lr"]
