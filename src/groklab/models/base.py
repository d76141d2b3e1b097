"""What the engine needs from a model: shapes, a seeded init and a forward over stacked params."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from groklab.models.layout import ParamInfo

# (regex over parameter names, group name) pairs; the first match wins.
GroupRules = tuple[tuple[str, str], ...]


class RunRandom:
    """Per-run random streams on the device, for stochastic layers (dropout).

    Run r draws only from its own generator, so its randomness never depends on its cohort
    mates; the streams' states are part of a cohort checkpoint. ``dropout`` holds each run's
    dropout probability (a cohort may mix rates; a run at 0 keeps every unit).
    """

    def __init__(self, seeds: Sequence[int], device: torch.device,
                 dropout: Sequence[float] | None = None):
        self.device = device
        self.gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        rates = list(dropout) if dropout is not None else [0.0] * len(self.gens)
        self.p = torch.tensor(rates, dtype=torch.float32, device=device)
        self.any_dropout = any(r > 0 for r in rates)

    def uniform(self, *shape: int) -> torch.Tensor:
        """``[R, *shape]`` uniform draws in [0, 1), row r from run r's stream."""
        return torch.stack([torch.rand(shape, generator=g, device=self.device)
                            for g in self.gens])

    def dropout(self, x: torch.Tensor) -> torch.Tensor:
        """Inverted dropout of ``x`` (``[R, ...]``) with run r's probability on ``x[r]``: a
        unit is kept when its uniform draw is at least p and then scaled by 1/(1 - p)."""
        if not self.any_dropout:
            return x
        view = (-1,) + (1,) * (x.dim() - 1)
        p = self.p.view(view)
        keep = self.uniform(*x.shape[1:]) >= p
        return x * keep.to(x.dtype) * (1.0 / (1.0 - p)).to(x.dtype)

    def rows(self) -> dict[str, list[torch.Generator]]:
        """The per-run state: every run's stream."""
        return {"gens": self.gens}


def dropout(x: torch.Tensor, train: bool, rng: RunRandom | None) -> torch.Tensor:
    """Per-run dropout while training (see ``RunRandom.dropout``); the identity otherwise."""
    return rng.dropout(x) if train and rng is not None else x


def check_heads(d_model: int, n_heads: int) -> None:
    """Attention splits the width evenly between heads (``ValueError`` otherwise)."""
    if d_model % n_heads:
        raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")


def layered_param_info(shapes: dict[str, tuple[int, ...]], n_layers: int
                       ) -> dict[str, ParamInfo]:
    """Kinds and depths for a model of ``tok_emb`` (depth -1), ``layers.{i}.*`` (depth i) and
    a head (depth ``n_layers``): leaves named ``weight*`` are matrices, the rest biases."""
    out = {}
    for name, shape in shapes.items():
        if name == "tok_emb":
            out[name] = ParamInfo(shape, "embedding", -1)
            continue
        depth = int(name.split(".")[1]) if name.startswith("layers.") else n_layers
        kind = "matrix" if name.rsplit(".", 1)[1].startswith("weight") else "bias"
        out[name] = ParamInfo(shape, kind, depth)
    return out


def layered_groups(n_layers: int, blocks: str = "layers", embeddings: str = "tok_emb"
                   ) -> GroupRules:
    """embedding = the parameters the regex ``embeddings`` names in full; lower = the first
    half of ``{blocks}.*`` (at least one block); higher = the rest and the head."""
    lower = "|".join(str(i) for i in range(n_layers // 2 or 1))
    return ((rf"^{embeddings}$", "embedding"), (rf"^{blocks}\.({lower})\.", "lower"),
            (r".*", "higher"))


class AttentionBlocks:
    """What the attention models (``Transformer``, ``GPT``) share: token and position
    embeddings, then ``blocks.{i}.`` whose first matrix is the q/k/v in-projection."""

    n_layers: int

    def default_groups(self) -> GroupRules:
        """embedding (token and position tables); lower = the first half of the blocks;
        higher = the rest, the final norm and the head."""
        return layered_groups(self.n_layers, "blocks", "(tok_emb|pos_emb)")

    def embedding_pair(self) -> tuple[str, str] | None:
        """The token embedding and the first weight matrix downstream of it (block 0's
        q/k/v in-projection), for the embedding study (engine/embedding.py)."""
        return "tok_emb", "blocks.0.attn.qkv.weight"

    def input_vectors(self, params: dict[str, torch.Tensor], tokens: torch.Tensor,
                      positions: Sequence[int]) -> torch.Tensor:
        """The token embedding's rows of ``tokens`` (see ``CohortModel.input_vectors``)."""
        return table_rows(params["tok_emb"], tokens)


def table_rows(table: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Rows ``tokens`` (``[n]``) of a stacked table ``[R, V, D]`` -> ``[R, n, D]``."""
    return table.index_select(1, tokens)


class CohortModel(Protocol):
    """A model the cohort engine can train.

    ``init`` draws ONE run's parameters from that run's generator, so a run's initial weights
    never depend on its neighbours; the engine stacks R such dicts along a new leading axis and
    calls ``forward`` once for the whole cohort.
    """

    @property
    def n_blocks(self) -> int:
        """Blocks between the embeddings and the head (depth-decayed rates count these)."""
        ...

    def param_info(self) -> dict[str, ParamInfo]:
        """Every parameter's shape, kind and depth, in the order ``init`` returns them."""
        ...

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]: ...

    def forward(self, params: dict[str, torch.Tensor], tokens: torch.Tensor, *,
                train: bool = False, rng: RunRandom | None = None) -> torch.Tensor:
        """tokens ``[R, B, T]`` -> outputs (``[R, B, n_classes]`` at the last position for a
        classifier); ``train`` with per-run ``rng`` switches on stochastic layers."""
        ...

    def default_groups(self) -> GroupRules:
        """How parameter names map to the learning-rate groups embedding / lower / higher."""
        ...

    def embedding_pair(self) -> tuple[str, str] | None:
        """The token embedding table and the first weight matrix downstream of it, for the
        embedding study (engine/embedding.py); None when the model has no embedding table."""
        ...

    def input_vectors(self, params: dict[str, torch.Tensor], tokens: torch.Tensor,
                      positions: Sequence[int]) -> torch.Tensor:
        """How the input layer represents each of ``tokens`` (``[n]`` ids) at ``positions``,
        from stacked ``params``: ``[R, n, width]``, for the progress measures
        (groklab/measures). A model with a token-embedding table gives its rows (the same at
        every position); one without (the one-hot MLP) the first layer's rows for the token
        at each of ``positions``, concatenated."""
        ...

    def forward_flops(self, n_examples: int) -> int:
        """Matmul FLOPs (2·m·n·k each) of ``forward`` on ``n_examples`` examples of one run."""
        ...

    def train_step_flops(self, batch: int) -> int:
        """Matmul FLOPs of one training step (forward and backward) on ``batch`` examples."""
        ...
