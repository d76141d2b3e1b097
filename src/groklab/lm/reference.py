"""A plain single-model ``torch.nn`` GPT in nanoGPT's style: the reference groklab's stacked
``models.gpt.GPT`` is checked against (tests/test_lm.py) and timed against
(benchmarks/lm_vs_plain.py). Same conventions: pre-norm, causal self-attention through
``F.scaled_dot_product_attention`` (its own dropout), GELU MLP, LayerNorm without bias, no
biases, tied head, dropout after the embeddings and on both residual branches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1 = nn.LayerNorm(d, bias=False)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.ln2 = nn.LayerNorm(d, bias=False)
        self.fc = nn.Linear(d, 4 * d, bias=False)
        self.mlp_proj = nn.Linear(4 * d, d, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, -1)
        q, k, v = (t.view(B, T, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, T, D)))
        return x + self.drop(self.mlp_proj(F.gelu(self.fc(self.ln2(x)))))


class PlainGPT(nn.Module):
    def __init__(self, vocab: int, context: int, n_layers: int, d_model: int, n_heads: int,
                 dropout: float = 0.0):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, d_model)
        self.pos_emb = nn.Embedding(context, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model, bias=False)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self.head.weight = self.tok_emb.weight  # tied

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        T = idx.shape[1]
        x = self.drop(self.tok_emb(idx) + self.pos_emb.weight[:T])
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        loss = None if targets is None else F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def load_groklab(self, params: dict[str, torch.Tensor]) -> PlainGPT:
        """Copy one run's groklab parameters (``[in, out]`` matrices) into this module."""
        self.tok_emb.weight.copy_(params["tok_emb"])
        self.pos_emb.weight.copy_(params["pos_emb"])
        self.ln_f.weight.copy_(params["ln_f.weight"])
        names = {"ln1.weight": "ln1.weight", "attn.qkv.weight": "qkv.weight",
                 "attn.proj.weight": "proj.weight", "ln2.weight": "ln2.weight",
                 "mlp.fc.weight": "fc.weight", "mlp.proj.weight": "mlp_proj.weight"}
        for i, block in enumerate(self.blocks):
            own = dict(block.named_parameters())
            for ours, theirs in names.items():
                p = params[f"blocks.{i}.{ours}"]
                own[theirs].copy_(p if p.dim() == 1 else p.t())
        return self

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """nanoGPT's rule: decay every tensor of 2+ dimensions, not the norms."""
        params = list(dict.fromkeys(self.parameters()))  # the tied matrix once
        return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
