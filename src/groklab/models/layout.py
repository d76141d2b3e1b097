"""A cohort's parameter layout: which columns of the flat ``[R, N]`` buffer hold what.

Every parameter occupies a contiguous column range and carries its learning-rate *group*
(from regex rules over names), its *depth* (block index; -1 before the first block, ``n_blocks``
after the last) and its *kind* (``embedding``, ``matrix``, ``bias`` or ``norm``). Rate policies
and weight-decay masks are functions of this layout (docs/design.md, decision 9), so three
groups, per-layer depth decay and "decay matrices only" are one mechanism.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch

Kind = Literal["embedding", "matrix", "bias", "norm"]
KINDS: tuple[Kind, ...] = ("embedding", "matrix", "bias", "norm")


@dataclass(frozen=True)
class ParamInfo:
    """What a model declares about one parameter."""

    shape: tuple[int, ...]
    kind: Kind
    depth: int  # block index; -1 for input embeddings, n_blocks for the final norm and head

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def assign_groups(names: Iterable[str], rules: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Map each parameter name to a group: the first rule whose regex matches it wins."""
    compiled = [(re.compile(pattern), group) for pattern, group in rules]
    out: dict[str, str] = {}
    for name in names:
        for pattern, group in compiled:
            if pattern.search(name):
                out[name] = group
                break
        else:
            raise ValueError(f"no group rule matches parameter {name!r}")
    return out


@dataclass(frozen=True)
class ParamLayout:
    infos: Mapping[str, ParamInfo]  # in buffer order
    groups: Mapping[str, str]
    offsets: Mapping[str, tuple[int, int]]
    n_blocks: int

    @classmethod
    def build(cls, infos: Mapping[str, ParamInfo], rules: Iterable[tuple[str, str]],
              n_blocks: int) -> ParamLayout:
        offsets, start = {}, 0
        for name, info in infos.items():
            offsets[name] = (start, start + info.numel)
            start += info.numel
        return cls(dict(infos), assign_groups(infos, rules), offsets, n_blocks)

    @property
    def n_columns(self) -> int:
        return max(b for _, b in self.offsets.values()) if self.offsets else 0

    def block_of(self, name: str) -> int:
        """The block whose depth-decayed rate a parameter takes: embeddings take block 0,
        the final norm and head the deepest block."""
        return min(max(self.infos[name].depth, 0), max(self.n_blocks - 1, 0))

    def columns(self, values: Mapping[str, torch.Tensor | float], out: torch.Tensor
                ) -> torch.Tensor:
        """Fill ``out`` (``[R, N]``) with each parameter's value (a ``[R]`` tensor or a number)."""
        for name, (a, b) in self.offsets.items():
            v = values[name]
            out[:, a:b] = v.to(out).view(-1, 1) if isinstance(v, torch.Tensor) else v
        return out

    def mask(self, kinds: Iterable[Kind]) -> torch.Tensor:
        """``[N]`` bool: the columns of parameters of the given kinds."""
        wanted = set(kinds)
        m = torch.zeros(self.n_columns, dtype=torch.bool)
        for name, (a, b) in self.offsets.items():
            if self.infos[name].kind in wanted:
                m[a:b] = True
        return m
