"""A nanoGPT-style character model over stacked per-run parameters (docs/protocol.md §7).

nanoGPT's conventions: pre-norm blocks ``x = x + Attn(LN(x)); x = x + MLP(LN(x))``, causal
self-attention, a GELU MLP of width 4·D, LayerNorm without bias, no biases anywhere, learned
token and position embeddings, dropout after the embeddings, on the attention probabilities
and on both residual branches, and the output head *tied* to the token embedding (one
tensor, ``tok_emb``: logits = h @ tok_embᵀ). Initialisation N(0, 0.02) for every matrix and
embedding, the two residual projections of each block N(0, 0.02/√(2L)), LayerNorm weights 1.
The forward returns logits at every position, ``[R, B, T, V]``.

Rates (docs/protocol.md §5): the tied matrix is a token embedding, depth -1, so it takes the
embedding group's rate and block 0's depth multiplier (η_0), whichever way it is used; the
final LayerNorm takes the deepest block's. ``generate`` samples with a KV cache.

The model trains the text task only (its registration carries the text task's check), and
its runs' settings are here, beside it: ``COMMON`` and ``SIZES`` are ``groklab lm``'s
(lm/settings.py), and ``REFERENCE``, ``groklab lm``'s CPU size evaluated on one batch per
split every 10 steps, is the run ``groklab bench`` times it on (``register_model(reference=)``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from groklab.models.base import AttentionBlocks, RunRandom, check_heads, dropout
from groklab.models.layout import ParamInfo
from groklab.models.registry import register_model
from groklab.models.stacked import embed, linear
from groklab.tasks import TaskData
from groklab.tasks.text import trains_gpt

INIT_STD = 0.02

# The runs of the character language model (docs/protocol.md §7; lm/settings.py): nanoGPT's
# optimiser settings, and the sizes ``paper`` (a GPU job) and ``cpu`` (the default).
COMMON: dict[str, Any] = dict(
    task="text", model="gpt", optimizer="adamw", beta1=0.9, beta2=0.99, weight_decay=0.1,
    decay_params="2d", grad_clip=1.0, lr_schedule="cosine", min_lr_ratio=0.1)

SIZES: dict[str, dict[str, Any]] = {
    "paper": dict(n_layers=6, n_heads=6, d_model=384, context=256, dropout=0.2, batch_size=64,
                  steps=5000, warmup=100, eval_every=250, eval_batches=200),
    "cpu": dict(n_layers=4, n_heads=4, d_model=128, context=64, dropout=0.0, batch_size=16,
                steps=1200, warmup=100, eval_every=100, eval_batches=10),
}
BASE_LR = 1e-3


def run_settings(size: str) -> dict[str, Any]:
    """Every setting of a language-model run of ``size`` (a key of ``SIZES``) but the
    depth-decay strategy and the seed."""
    return COMMON | SIZES[size] | {"lr": (BASE_LR,) * 3}


# ``groklab bench``'s reference run of the model
REFERENCE = run_settings("cpu") | dict(eval_every=10, eval_batches=1)


def _norm_linear(x: torch.Tensor, w: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``LayerNorm(x) @ matrix`` for a bias-free LayerNorm of per-run weight ``w`` ``[R, D]``
    and a per-run ``[R, D, out]`` matrix. One run: torch's fused affine LayerNorm. A cohort:
    the weight folded into the matrix, (x̂ ⊙ w) @ M = x̂ @ (diag(w) M), which costs D·out per
    run instead of an element-wise pass over every activation (same result to rounding)."""
    if w.shape[0] == 1:
        return linear(F.layer_norm(x, x.shape[-1:], w[0], eps=1e-5), matrix)
    return linear(F.layer_norm(x, x.shape[-1:], eps=1e-5), w.unsqueeze(-1) * matrix)


@dataclass(frozen=True)
class GPT(AttentionBlocks):
    vocab_size: int
    seq_len: int  # the context: position embeddings and the longest window
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4

    def __post_init__(self) -> None:
        check_heads(self.d_model, self.n_heads)

    @property
    def n_blocks(self) -> int:
        return self.n_layers

    @property
    def n_classes(self) -> int:
        return self.vocab_size

    def shapes(self) -> dict[str, tuple[int, ...]]:
        D = self.d_model
        out: dict[str, tuple[int, ...]] = {"tok_emb": (self.vocab_size, D),
                                           "pos_emb": (self.seq_len, D)}
        for i in range(self.n_layers):
            out |= {f"blocks.{i}.ln1.weight": (D,), f"blocks.{i}.attn.qkv.weight": (D, 3 * D),
                    f"blocks.{i}.attn.proj.weight": (D, D), f"blocks.{i}.ln2.weight": (D,),
                    f"blocks.{i}.mlp.fc.weight": (D, 4 * D),
                    f"blocks.{i}.mlp.proj.weight": (4 * D, D)}
        return out | {"ln_f.weight": (D,)}

    def param_info(self) -> dict[str, ParamInfo]:
        out = {}
        for name, shape in self.shapes().items():
            if name.endswith("_emb"):
                out[name] = ParamInfo(shape, "embedding", -1)
                continue
            depth = int(name.split(".")[1]) if name.startswith("blocks.") else self.n_layers
            kind = "norm" if "ln" in name.rsplit(".", 2)[-2] else "matrix"
            out[name] = ParamInfo(shape, kind, depth)
        return out

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One run's parameters: N(0, 0.02), residual projections N(0, 0.02/√(2L)), LN 1."""
        params = {}
        for name, shape in self.shapes().items():
            t = torch.empty(shape)
            if "ln" in name:
                t.fill_(1.0)
            else:
                std = INIT_STD / math.sqrt(2 * self.n_layers) if name.endswith(
                    "proj.weight") else INIT_STD
                t.normal_(0.0, std, generator=generator)
            params[name] = t
        return params

    # -- forward ----------------------------------------------------------------------------
    def forward(self, params: dict[str, torch.Tensor], tokens: torch.Tensor, *,
                train: bool = False, rng: RunRandom | None = None) -> torch.Tensor:
        """tokens ``[R, B, T]`` -> logits ``[R, B, T, V]`` at every position."""
        T = tokens.shape[-1]
        drop_all = train and rng is not None and rng.any_dropout
        x = dropout(embed(params["tok_emb"], tokens) + params["pos_emb"][:, None, :T],
                    drop_all, rng)
        for i in range(self.n_layers):
            x, _ = self._block(params, f"blocks.{i}.", x, rng if drop_all else None)
        return self._head(params, x)

    def _head(self, P: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return _norm_linear(x, P["ln_f.weight"], P["tok_emb"].transpose(1, 2))

    def _block(self, P: dict[str, torch.Tensor], pre: str, x: torch.Tensor,
               rng: RunRandom | None, cache: tuple[torch.Tensor, torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One block; ``cache`` (keys, values ``[R, B, H, t, dh]`` of earlier positions) makes
        ``x`` the new positions only. Returns x and the keys and values including them."""
        R, B, T, D = x.shape
        H, dh = self.n_heads, D // self.n_heads
        q, k, v = _norm_linear(x, P[pre + "ln1.weight"], P[pre + "attn.qkv.weight"]).split(D, -1)
        q, k, v = (t.view(R, B, T, H, dh).transpose(2, 3) for t in (q, k, v))
        if cache is not None:  # decoding: one new position attends to all
            assert T == 1, "a cache extends one position at a time"
            k, v = torch.cat([cache[0], k], 3), torch.cat([cache[1], v], 3)
        S = k.shape[3]
        if rng is not None:  # per-run dropout on the probabilities: the explicit form
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
            mask = torch.ones(T, S, dtype=torch.bool, device=x.device).triu(S - T + 1)
            a = rng.dropout(scores.masked_fill(mask, float("-inf")).softmax(-1)) @ v
        else:
            a = F.scaled_dot_product_attention(
                q.reshape(R * B, H, T, dh), k.reshape(R * B, H, S, dh),
                v.reshape(R * B, H, S, dh), is_causal=cache is None).view(R, B, H, T, dh)
        a = a.transpose(2, 3).reshape(R, B, T, D)
        x = x + dropout(linear(a, P[pre + "attn.proj.weight"]), rng is not None, rng)
        h = F.gelu(_norm_linear(x, P[pre + "ln2.weight"], P[pre + "mlp.fc.weight"]))
        x = x + dropout(linear(h, P[pre + "mlp.proj.weight"]), rng is not None, rng)
        return x, (k, v)

    # -- cost -------------------------------------------------------------------------------
    def forward_flops(self, n_examples: int) -> int:
        """Matmul FLOPs of ``forward`` on ``n_examples`` windows of ``seq_len``: per token
        24·D² per block (q/k/v 6D², projection 2D², MLP 16D²) and the head 2·D·V; per window
        and block the T×T scores and their product with the values, 2·2·T²·D."""
        T, D, L, V = self.seq_len, self.d_model, self.n_layers, self.vocab_size
        return n_examples * (T * (L * 24 * D * D + 2 * D * V) + L * 4 * T * T * D)

    def train_step_flops(self, batch: int) -> int:
        return 3 * self.forward_flops(batch)

    # -- sampling ---------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, params: dict[str, torch.Tensor], prompt: torch.Tensor, n_new: int, *,
                 temperature: float = 0.8, top_k: int | None = 200,
                 generators: list[torch.Generator] | None = None) -> tuple[torch.Tensor, float]:
        """Continue ``prompt`` (``[R, t]`` token ids, one sequence per run) by ``n_new`` tokens
        sampled at ``temperature`` from the ``top_k`` most likely, with a KV cache. Returns
        the ``[R, t + n_new]`` tokens and the seconds it took.

        The model sees at most ``seq_len`` positions: when the cache is full it is rebuilt
        from the last ``seq_len // 2`` tokens (one forward over them), then grows again.
        """
        if prompt.dim() != 2 or prompt.shape[1] < 1:
            raise ValueError("prompt: [R, t] token ids with t >= 1")
        R = prompt.shape[0]
        gens = generators or [None] * R
        out = prompt.clone()
        start = time.perf_counter()
        keep = max(1, self.seq_len // 2)
        cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        new = out[:, -self.seq_len:]
        pos = 0
        for _ in range(n_new):
            if cache is not None and pos >= self.seq_len:  # full: rebuild from the tail
                cache, new, pos = None, out[:, -keep:], 0
            logits, cache = self._extend(params, new, pos, cache)
            pos += new.shape[1]
            logits = logits[:, -1].float() / temperature  # [R, V]
            if top_k is not None:
                kth = logits.topk(min(top_k, logits.shape[-1]), -1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = logits.softmax(-1)
            nxt = torch.stack([torch.multinomial(probs[r], 1, generator=gens[r])
                               for r in range(R)])
            out = torch.cat([out, nxt], 1)
            new = nxt
        if out.device.type == "cuda":
            torch.cuda.synchronize(out.device)
        return out, time.perf_counter() - start

    def _extend(self, P: dict[str, torch.Tensor], tokens: torch.Tensor, pos: int,
                cache: list[tuple[torch.Tensor, torch.Tensor]] | None
                ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Logits ``[R, t, V]`` of ``tokens`` ``[R, t]`` at positions pos.., and the cache."""
        t = tokens.shape[1]
        x = embed(P["tok_emb"], tokens[:, None]) + P["pos_emb"][:, None, pos : pos + t]
        new_cache = []
        for i in range(self.n_layers):
            x, kv = self._block(P, f"blocks.{i}.", x, None, None if cache is None else cache[i])
            new_cache.append(kv)
        return self._head(P, x)[:, 0], new_cache


# d_ff stays in a gpt run's identity although the model reads none (its MLP is 4 · d_model
# wide), as it did before models declared their settings: no existing run id changes.
@register_model("gpt", unread=("d_ff",), check=trains_gpt, reference=REFERENCE)
def build_gpt(task: TaskData, *, n_layers: int, d_model: int, n_heads: int) -> GPT:
    """The character model of a run (the text task: the window is the task's length)."""
    return GPT(vocab_size=task.vocab_size, seq_len=task.seq_len, n_layers=n_layers,
               d_model=d_model, n_heads=n_heads)
