"""Which tasks the Fourier measures are defined for (docs/protocol.md §4.1), and the grid of
all p² operand pairs they evaluate.

The measures use the additive Fourier basis of Z_p, which describes the algorithm a network
learns for x + y and x − y (Nanda et al. 2023): tasks ``x_plus_y``, ``x_minus_y`` and ``sum``
with two operands (``sum`` with K = 2 is x + y). Every other task is out of scope, with the
reason in ``MeasureError``'s message; its runs can still record weight norms
(``measures = "norms"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from groklab.tasks.base import EQ_TOKEN, N_SYMBOLS, OP_TOKEN, language_tasks

SIGNS = {"x_plus_y": 1, "x_minus_y": -1, "sum": 1}

WHY_NOT = {
    "x_div_y": "x / y = x · y⁻¹ is the operation of the multiplicative group of Z_p, whose "
               "Fourier basis is indexed by discrete logarithms, not by the residues; groklab "
               "does not compute it",
    "permutation": "the group S_k is not abelian: its Fourier analysis needs the irreducible "
                   "representations of S_k, which groklab does not compute",
    "x2_plus_y2": "no Fourier algorithm over the residues is known for this polynomial task "
                  "(the additive frequencies of x do not describe x²)",
    "x2_plus_xy_plus_y2": "no Fourier algorithm over the residues is known for this polynomial "
                          "task",
    "x3_plus_xy": "no Fourier algorithm over the residues is known for this polynomial task",
}
LANGUAGE = "a language-model task has no residues"  # any task registered as one


class MeasureError(ValueError):
    """A measure asked of a task it is not defined for."""


@dataclass(frozen=True)
class FourierScope:
    """A task the Fourier measures apply to: labels (x + sign·y) mod p, operand x at input
    position 0 and y at position 2, residue r written as token r + ``N_SYMBOLS``."""

    p: int
    sign: int
    positions: tuple[int, ...] = (0, 2)

    def residue_tokens(self) -> torch.Tensor:
        """``[p]``: the token of each residue 0..p−1."""
        return torch.arange(self.p) + N_SYMBOLS

    def grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every pair (x, y), pair index x·p + y: input tokens ``[p², 4]`` (``[x, op, y, =]``)
        and labels ``[p²]``."""
        p = self.p
        x = torch.arange(p).repeat_interleave(p)
        y = torch.arange(p).repeat(p)
        tokens = torch.stack([x + N_SYMBOLS, torch.full_like(x, OP_TOKEN), y + N_SYMBOLS,
                              torch.full_like(x, EQ_TOKEN)], 1)
        return tokens, (x + self.sign * y) % p

    def pair_index(self, tokens: torch.Tensor) -> torch.Tensor:
        """Rows of a task table ``[n, 4]`` -> their pair indices x·p + y ``[n]``."""
        x = tokens[:, self.positions[0]] - N_SYMBOLS
        y = tokens[:, self.positions[1]] - N_SYMBOLS
        return x * self.p + y


def fourier_scope(task: str, args: Mapping[str, Any]) -> FourierScope:
    """The scope of ``task`` with its settings ``args`` (``RunSpec.task_args()``), or
    ``MeasureError`` saying why the Fourier measures are not defined for it."""
    if task not in SIGNS:
        why = LANGUAGE if task in language_tasks() else WHY_NOT.get(
            task, "it is not one of the additive tasks of Z_p")
        raise MeasureError(f"the Fourier measures are defined for x_plus_y, x_minus_y and sum "
                           f"with 2 operands, not for task {task!r}: {why}. Use measures "
                           "'norms' for weight norms only")
    if task == "sum" and args.get("operands", 2) != 2:
        raise MeasureError(f"the Fourier measures of task 'sum' need 2 operands (got "
                           f"{args['operands']}): K operands need a K-dimensional basis, which "
                           "groklab does not compute. Use measures 'norms' for weight norms "
                           "only")
    return FourierScope(int(args["p"]), SIGNS[task])
