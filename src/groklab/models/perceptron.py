"""The MLP of the related studies (docs/protocol.md §3) over stacked per-run parameters.

Input: the learned embeddings (width ``d_model``) of all T input tokens, concatenated
(``[T·D]``); or, with ``embedding=False``, the tokens' one-hot vectors concatenated
(``[T·V]``) and no embedding table. ``n_layers`` hidden layers of width ``d_hidden`` with an
activation (dropout after each while training), then a linear head. Weights are stored
input-major (``[in, out]``), so a layer is ``x @ W``.

One-hot inputs: ``onehot(x) @ W`` is the sum over positions t of row ``t·V + x_t`` of W, so
the first layer is computed as T row gathers and a sum (the same function as the matmul,
without its T·V-wide input); ``forward_flops`` counts no matmul for it. Without an
embedding table an adaptive embedding rate has nothing to adapt: the model's registration
refuses it (``needs_a_table``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from groklab.models.base import (
    GroupRules,
    RunRandom,
    dropout,
    layered_groups,
    layered_param_info,
    table_rows,
)
from groklab.models.layout import ParamInfo
from groklab.models.registry import register_model
from groklab.models.stacked import embed, linear, uniform_
from groklab.tasks import TaskData

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}


@dataclass(frozen=True)
class MLP:
    vocab_size: int
    n_classes: int
    seq_len: int
    n_layers: int = 2
    d_model: int = 128
    d_hidden: int = 512
    activation: str = "relu"
    embedding: bool = True

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; known: "
                             f"{', '.join(ACTIVATIONS)}")

    @property
    def n_blocks(self) -> int:
        return self.n_layers

    @property
    def d_in(self) -> int:
        width = self.d_model if self.embedding else self.vocab_size
        return self.seq_len * width

    def shapes(self) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        if self.embedding:
            out["tok_emb"] = (self.vocab_size, self.d_model)
        width = self.d_in
        for i in range(self.n_layers):
            out[f"layers.{i}.weight"] = (width, self.d_hidden)
            out[f"layers.{i}.bias"] = (self.d_hidden,)
            width = self.d_hidden
        out |= {"head.weight": (width, self.n_classes), "head.bias": (self.n_classes,)}
        return out

    def param_info(self) -> dict[str, ParamInfo]:
        """Shapes, kinds and depths: embedding -1, hidden layer i at i, the head at L."""
        return layered_param_info(self.shapes(), self.n_layers)

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """As torch.nn: embedding N(0, 1); every linear U(±1/√fan_in) for weight and bias
        (fan_in of the one-hot first layer: T·V)."""
        params: dict[str, torch.Tensor] = {}
        shapes = self.shapes()
        for name, shape in shapes.items():
            t = torch.empty(shape)
            if name == "tok_emb":
                t.normal_(generator=generator)
            else:
                uniform_(t, shapes[name.rsplit(".", 1)[0] + ".weight"][0], generator)
            params[name] = t
        return params

    def default_groups(self) -> GroupRules:
        """embedding; lower = first half of the hidden layers; higher = the rest and the head."""
        return layered_groups(self.n_layers)

    def embedding_pair(self) -> tuple[str, str] | None:
        """The embedding and the first matrix downstream of it (engine/embedding.py)."""
        return ("tok_emb", "layers.0.weight") if self.embedding else None

    def input_vectors(self, params: dict[str, torch.Tensor], tokens: torch.Tensor,
                      positions: Sequence[int]) -> torch.Tensor:
        """The embedding's rows of ``tokens``; one-hot: the first layer's rows t·V + token
        for each position t of ``positions``, concatenated (``[R, n, len(positions)·H]``)."""
        if self.embedding:
            return table_rows(params["tok_emb"], tokens)
        w0 = params["layers.0.weight"]
        return torch.cat([table_rows(w0, tokens + t * self.vocab_size) for t in positions], -1)

    def forward(self, params: dict[str, torch.Tensor], tokens: torch.Tensor, *,
                train: bool = False, rng: RunRandom | None = None) -> torch.Tensor:
        """tokens ``[R, B, T]`` -> logits ``[R, B, n_classes]``."""
        R, B, T = tokens.shape
        act = ACTIVATIONS[self.activation]
        w0, b0 = params["layers.0.weight"], params["layers.0.bias"]
        if self.embedding:
            x = embed(params["tok_emb"], tokens).reshape(R, B, T * self.d_model)
            h = linear(x, w0, b0)
        else:  # one-hot @ W: row t·V + token of W for each position, summed
            offsets = torch.arange(T, device=tokens.device) * self.vocab_size
            rows = embed(w0, tokens + offsets)  # [R, B, T, H]
            h = rows.sum(2) + b0[:, None, :]
        h = dropout(act(h), train, rng)
        for i in range(1, self.n_layers):
            h = linear(h, params[f"layers.{i}.weight"], params[f"layers.{i}.bias"])
            h = dropout(act(h), train, rng)
        return linear(h, params["head.weight"], params["head.bias"])

    def forward_flops(self, n_examples: int) -> int:
        """Matmul FLOPs (2·m·n·k each); the one-hot first layer is gathers (none counted)."""
        H = self.d_hidden
        first = 2 * self.d_in * H if self.embedding else 0
        per_example = first + (self.n_layers - 1) * 2 * H * H + 2 * H * self.n_classes
        return n_examples * per_example

    def train_step_flops(self, batch: int) -> int:
        """Forward + backward (each matmul's backward costs two matmuls of its size)."""
        return 3 * self.forward_flops(batch)


def needs_a_table(spec: Any) -> None:
    """An adaptive embedding rate needs the embedding table."""
    if spec.embedding_lr == "adaptive" and not spec.embedding:
        raise ValueError("embedding_lr 'adaptive' needs an embedding table (the MLP has "
                         "none with embedding = false)")


@register_model("mlp", check=needs_a_table)
def build_mlp(task: TaskData, *, n_layers: int, d_model: int, d_hidden: int, activation: str,
              embedding: bool) -> MLP:
    """The MLP of a run."""
    return MLP(vocab_size=task.vocab_size, n_classes=task.n_classes, seq_len=task.seq_len,
               n_layers=n_layers, d_model=d_model, d_hidden=d_hidden, activation=activation,
               embedding=embedding)
