"""The paper's decoder-only Transformer (docs/protocol.md §3) over stacked per-run parameters.

Post-norm blocks ``x = LN(x + Attn(x)); x = LN(x + FFN(x))``, causal attention, GELU FFN, learned
token + position embeddings, final LayerNorm and a linear head read at the last position.
Weights are stored input-major (``[in, out]``) so a linear layer is ``x @ W``.

The last block computes only what the prediction reads (docs/design.md, decision 5): keys and
values for every position, but the query, attention output and FFN only at the last one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from groklab.models.base import AttentionBlocks, RunRandom, check_heads, dropout
from groklab.models.layout import ParamInfo
from groklab.models.registry import register_model
from groklab.models.stacked import embed, layer_norm, linear, uniform_
from groklab.tasks import TaskData

Drop = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Transformer(AttentionBlocks):
    vocab_size: int
    n_classes: int
    seq_len: int
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 512
    prune_last: bool = True
    legacy_init: bool = False  # semantics version 1: every linear U(±1/√fan_in)
    max_len: int | None = None  # position embeddings (None: seq_len); forward uses the first T

    def __post_init__(self) -> None:
        check_heads(self.d_model, self.n_heads)

    @property
    def n_blocks(self) -> int:
        return self.n_layers

    def shapes(self) -> dict[str, tuple[int, ...]]:
        D, F_ = self.d_model, self.d_ff
        out: dict[str, tuple[int, ...]] = {
            "tok_emb": (self.vocab_size, D),
            "pos_emb": (self.max_len or self.seq_len, D),
        }
        for i in range(self.n_layers):
            out |= {
                f"blocks.{i}.attn.qkv.weight": (D, 3 * D),
                f"blocks.{i}.attn.qkv.bias": (3 * D,),
                f"blocks.{i}.attn.proj.weight": (D, D),
                f"blocks.{i}.attn.proj.bias": (D,),
                f"blocks.{i}.ln1.weight": (D,),
                f"blocks.{i}.ln1.bias": (D,),
                f"blocks.{i}.ffn.fc.weight": (D, F_),
                f"blocks.{i}.ffn.fc.bias": (F_,),
                f"blocks.{i}.ffn.out.weight": (F_, D),
                f"blocks.{i}.ffn.out.bias": (D,),
                f"blocks.{i}.ln2.weight": (D,),
                f"blocks.{i}.ln2.bias": (D,),
            }
        out |= {"ln_f.weight": (D,), "ln_f.bias": (D,), "head.weight": (D, self.n_classes),
                "head.bias": (self.n_classes,)}
        return out

    def param_info(self) -> dict[str, ParamInfo]:
        """Every parameter's shape, kind and depth (block index; -1 embeddings, L the head)."""
        out = {}
        for name, shape in self.shapes().items():
            if name.endswith("_emb"):
                kind, depth = "embedding", -1
            else:
                depth = int(name.split(".")[1]) if name.startswith("blocks.") else self.n_layers
                leaf = name.rsplit(".", 2)[-2]
                kind = "norm" if leaf.startswith("ln") else (
                    "matrix" if name.endswith("weight") else "bias")
            out[name] = ParamInfo(shape, kind, depth)
        return out

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One run's initial parameters (docs/protocol.md §3), as torch.nn builds the reference.

        Embeddings N(0, 1); attention in-projection (q, k, v) Xavier-uniform over the whole
        ``[3D, D]`` matrix with zero bias and out-projection U(±1/√fan_in) with zero bias (as
        ``nn.MultiheadAttention``); FFN and head U(±1/√fan_in) weight and bias (``nn.Linear``);
        LayerNorm (1, 0). ``legacy_init`` (semantics version 1): every linear, attention
        included, U(±1/√fan_in) for weight and bias.
        """
        params: dict[str, torch.Tensor] = {}
        shapes = self.shapes()
        for name, shape in shapes.items():
            t = torch.empty(shape)
            if name.endswith("_emb"):
                t.normal_(generator=generator)
            elif ".ln" in name or name.startswith("ln_"):
                t.fill_(1.0 if name.endswith("weight") else 0.0)
            elif not self.legacy_init and ".attn." in name and name.endswith("bias"):
                t.zero_()
            elif not self.legacy_init and name.endswith("attn.qkv.weight"):
                D = shape[0]
                bound = math.sqrt(6.0 / (D + 3 * D))  # xavier: fan_in D, fan_out 3D
                t.uniform_(-bound, bound, generator=generator)
            else:  # linear weight [in, out] or its bias: fan_in is the weight's first axis
                fan_in = shapes[name.rsplit(".", 1)[0] + ".weight"][0]
                uniform_(t, fan_in, generator)
            params[name] = t
        return params

    def forward(self, params: dict[str, torch.Tensor], tokens: torch.Tensor, *,
                train: bool = False, rng: RunRandom | None = None) -> torch.Tensor:
        """tokens ``[R, B, T]`` -> logits ``[R, B, n_classes]`` at the last position.

        With ``train`` and per-run streams ``rng``, dropout (each run's own rate) acts on the
        attention probabilities and on both residual branches before they are added.
        """
        T = tokens.shape[-1]
        drop: Drop = lambda t: dropout(t, train, rng)  # noqa: E731
        x = embed(params["tok_emb"], tokens) + params["pos_emb"][:, None, :T]
        last = self.n_layers - 1
        for i in range(last):
            x = self._block(params, f"blocks.{i}.", x, drop)
        if self.prune_last:
            h = self._last_block(params, f"blocks.{last}.", x, drop)
        else:
            h = self._block(params, f"blocks.{last}.", x, drop)[:, :, -1]
        h = layer_norm(h, params["ln_f.weight"], params["ln_f.bias"])
        return linear(h, params["head.weight"], params["head.bias"])

    def forward_flops(self, n_examples: int) -> int:
        """Matmul FLOPs (2·m·n·k each) of ``forward`` on ``n_examples`` sequences of seq_len.

        Counted from the shapes actually computed: full blocks do every position (scores for
        the whole T×T square, masked afterwards); the pruned last block does keys/values for
        all positions but query, scores, attention output, projection and FFN for the last
        one only. Element-wise work (LayerNorm, GELU, softmax) is not counted.
        """
        T, D, F_, C = self.seq_len, self.d_model, self.d_ff, self.n_classes
        full = 2 * T * D * 3 * D + 2 * 2 * T * T * D + 2 * T * D * D + 2 * 2 * T * D * F_
        if self.prune_last:
            last = 2 * T * D * 2 * D + 2 * D * D + 2 * 2 * T * D + 2 * D * D + 2 * 2 * D * F_
        else:
            last = full
        per_example = (self.n_layers - 1) * full + last + 2 * D * C
        return n_examples * per_example

    def train_step_flops(self, batch: int) -> int:
        """Forward + backward (each matmul's backward costs two matmuls of its size)."""
        return 3 * self.forward_flops(batch)

    # -- blocks -----------------------------------------------------------------------------
    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """[R, B, T, D] -> [R, B, H, T, dh]"""
        R, B, T, _ = t.shape
        return t.view(R, B, T, self.n_heads, -1).transpose(2, 3)

    def _ffn(self, P: dict[str, torch.Tensor], pre: str, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(linear(x, P[pre + "ffn.fc.weight"], P[pre + "ffn.fc.bias"]))
        return linear(h, P[pre + "ffn.out.weight"], P[pre + "ffn.out.bias"])

    def _block(self, P: dict[str, torch.Tensor], pre: str, x: torch.Tensor, drop: Drop
               ) -> torch.Tensor:
        R, B, T, D = x.shape
        q, k, v = linear(x, P[pre + "attn.qkv.weight"], P[pre + "attn.qkv.bias"]).split(D, -1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(D // self.n_heads)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        att = drop(scores.masked_fill(causal, float("-inf")).softmax(-1))
        a = (att @ v).transpose(2, 3).reshape(R, B, T, D)
        a = drop(linear(a, P[pre + "attn.proj.weight"], P[pre + "attn.proj.bias"]))
        x = layer_norm(x + a, P[pre + "ln1.weight"], P[pre + "ln1.bias"])
        f = drop(self._ffn(P, pre, x))
        return layer_norm(x + f, P[pre + "ln2.weight"], P[pre + "ln2.bias"])

    def _last_block(self, P: dict[str, torch.Tensor], pre: str, x: torch.Tensor, drop: Drop
                    ) -> torch.Tensor:
        """The block at the last position only: [R, B, T, D] -> [R, B, D]."""
        R, B, T, D = x.shape
        H, dh = self.n_heads, D // self.n_heads
        w, b = P[pre + "attn.qkv.weight"], P[pre + "attn.qkv.bias"]
        kv = linear(x, w[:, :, D:], b[:, D:])  # [R, B, T, 2D]
        x_last = x[:, :, -1]
        q = linear(x_last, w[:, :, :D], b[:, :D]).view(R, B, H, 1, dh)
        k, v = self._heads(kv[..., :D]), self._heads(kv[..., D:])  # [R, B, H, T, dh]
        att = drop(((q @ k.transpose(-1, -2)) / math.sqrt(dh)).softmax(-1))  # [R, B, H, 1, T]
        a = (att @ v).view(R, B, D)
        a = drop(linear(a, P[pre + "attn.proj.weight"], P[pre + "attn.proj.bias"]))
        h = layer_norm(x_last + a, P[pre + "ln1.weight"], P[pre + "ln1.bias"])
        f = drop(self._ffn(P, pre, h))
        return layer_norm(h + f, P[pre + "ln2.weight"], P[pre + "ln2.bias"])


@register_model("transformer")
def build_transformer(task: TaskData, *, n_layers: int, d_model: int, n_heads: int,
                      d_ff: int | None, max_len: int | None, semantics: int) -> Transformer:
    """The Transformer of a run: ``d_ff`` None is 4 · d_model; semantics version 1 is the
    legacy initialisation."""
    return Transformer(vocab_size=task.vocab_size, n_classes=task.n_classes,
                       seq_len=task.seq_len, n_layers=n_layers, d_model=d_model,
                       n_heads=n_heads, d_ff=d_ff or 4 * d_model, legacy_init=semantics == 1,
                       max_len=max_len)
