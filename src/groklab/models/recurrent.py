"""The LSTM of the related studies (docs/protocol.md §3) over stacked per-run parameters.

Token embeddings (width ``d_model``) feed ``n_layers`` LSTM layers of hidden width
``d_hidden``, with the gates and parameters of ``torch.nn.LSTM`` (order i, f, g, o; input and
recurrent biases both kept, so weights load one to one); the last layer's hidden state at
the last position goes to a linear head. Dropout acts between layers (on the output
sequence of every layer but the last, as ``torch.nn.LSTM``'s ``dropout``).

Each layer's input projection is one batched matmul over all positions and runs; only the
recurrent part steps through time, and the first step (h = 0) skips its matmul. Weights
are stored input-major (``[in, 4H]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

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


@dataclass(frozen=True)
class LSTM:
    vocab_size: int
    n_classes: int
    seq_len: int
    n_layers: int = 2
    d_model: int = 128
    d_hidden: int = 512

    @property
    def n_blocks(self) -> int:
        return self.n_layers

    def shapes(self) -> dict[str, tuple[int, ...]]:
        H = self.d_hidden
        out: dict[str, tuple[int, ...]] = {"tok_emb": (self.vocab_size, self.d_model)}
        width = self.d_model
        for i in range(self.n_layers):
            out |= {f"layers.{i}.weight_ih": (width, 4 * H), f"layers.{i}.weight_hh": (H, 4 * H),
                    f"layers.{i}.bias_ih": (4 * H,), f"layers.{i}.bias_hh": (4 * H,)}
            width = H
        out |= {"head.weight": (H, self.n_classes), "head.bias": (self.n_classes,)}
        return out

    def param_info(self) -> dict[str, ParamInfo]:
        """Shapes, kinds and depths: embedding -1, LSTM layer i at i, the head at L."""
        return layered_param_info(self.shapes(), self.n_layers)

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """As torch.nn: embedding N(0, 1); every LSTM weight and bias U(±1/√H); the head
        U(±1/√fan_in) for weight and bias."""
        params: dict[str, torch.Tensor] = {}
        for name, shape in self.shapes().items():
            t = torch.empty(shape)
            if name == "tok_emb":
                t.normal_(generator=generator)
            else:  # LSTM weights and biases, and the head (whose fan_in is H as well)
                uniform_(t, self.d_hidden, generator)
            params[name] = t
        return params

    def default_groups(self) -> GroupRules:
        """embedding; lower = first half of the layers; higher = the rest and the head."""
        return layered_groups(self.n_layers)

    def embedding_pair(self) -> tuple[str, str]:
        """The embedding and the first matrix downstream of it (engine/embedding.py)."""
        return "tok_emb", "layers.0.weight_ih"

    def input_vectors(self, params: dict[str, torch.Tensor], tokens: torch.Tensor,
                      positions: Sequence[int]) -> torch.Tensor:
        """The token embedding's rows of ``tokens`` (``CohortModel.input_vectors``)."""
        return table_rows(params["tok_emb"], tokens)

    def forward(self, params: dict[str, torch.Tensor], tokens: torch.Tensor, *,
                train: bool = False, rng: RunRandom | None = None) -> torch.Tensor:
        """tokens ``[R, B, T]`` -> logits ``[R, B, n_classes]`` from the last position."""
        x = embed(params["tok_emb"], tokens)  # [R, B, T, D]
        last = self.n_layers - 1
        h = x
        for i in range(self.n_layers):
            pre = f"layers.{i}."
            seq = self._layer(params[pre + "weight_ih"], params[pre + "weight_hh"],
                              params[pre + "bias_ih"] + params[pre + "bias_hh"], h,
                              keep_all=i < last)
            h = dropout(seq, train, rng) if i < last else seq
        return linear(h, params["head.weight"], params["head.bias"])

    def _layer(self, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor,
               x: torch.Tensor, keep_all: bool) -> torch.Tensor:
        """One LSTM layer over ``x`` ``[R, B, T, in]`` -> every hidden state ``[R, B, T, H]``
        (``keep_all``) or the last one ``[R, B, H]``."""
        R, B, T, _ = x.shape
        gates_x = linear(x, w_ih, bias)  # [R, B, T, 4H]
        h = c = None
        outs = []
        for t in range(T):
            g = gates_x[:, :, t] if h is None else torch.baddbmm(gates_x[:, :, t], h, w_hh)
            i, f, gg, o = g.chunk(4, dim=-1)
            i, f, o, gg = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), torch.tanh(gg)
            c = i * gg if c is None else f * c + i * gg
            h = o * torch.tanh(c)
            outs.append(h)
        assert h is not None
        return torch.stack(outs, 2) if keep_all else h

    def forward_flops(self, n_examples: int) -> int:
        """Matmul FLOPs (2·m·n·k each): input projections at every position, recurrent
        products at every position but the first (h = 0 there), the head."""
        T, D, H, C = self.seq_len, self.d_model, self.d_hidden, self.n_classes
        recurrent = 2 * (T - 1) * H * 4 * H
        first = 2 * T * D * 4 * H + recurrent
        rest = 2 * T * H * 4 * H + recurrent
        return n_examples * (first + (self.n_layers - 1) * rest + 2 * H * C)

    def train_step_flops(self, batch: int) -> int:
        """Forward + backward (each matmul's backward costs two matmuls of its size)."""
        return 3 * self.forward_flops(batch)


@register_model("lstm")
def build_lstm(task: TaskData, *, n_layers: int, d_model: int, d_hidden: int) -> LSTM:
    """The LSTM of a run."""
    return LSTM(vocab_size=task.vocab_size, n_classes=task.n_classes, seq_len=task.seq_len,
                n_layers=n_layers, d_model=d_model, d_hidden=d_hidden)
