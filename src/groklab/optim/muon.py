"""Muon: orthogonalised momentum for a cohort's hidden matrices, batched over runs.

Muon (Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/) replaces the update of
each 2-D hidden weight matrix by the orthogonalised momentum ``NS(B)``, where ``NS`` is five
steps of the quintic Newton–Schulz iteration; embeddings, biases, norms and the output head
stay on AdamW (docs/protocol.md §4, Muon). The definition is that of ``torch.optim.Muon``
(torch 2.13, ``torch/optim/_muon.py``), which the tests match step by step:

    B ← μ B + (1 − μ) g                                   (B starts at 0: ``buf.lerp_``)
    U = g + μ (B − g)  with Nesterov, else B              (``g.lerp(B, μ)``)
    X = U / max(‖U‖_F, 1e-7), in the wide orientation (rows ≤ columns)
    5 times: A = X Xᵀ;  X ← a X + (b A + c A²) X          (a, b, c) = (3.4445, −4.7750, 2.0315)
    p ← p − η λ p − η · adjust · X

``adjust`` is torch's ``adjust_lr_fn``: "original" √max(1, fan_out/fan_in), or
"match_rms_adamw" 0.2 √max(fan_out, fan_in). groklab stores weights input-major (``[in,
out]``), the transpose of ``torch.nn.Linear``'s ``[out, in]``, so shapes are read in torch's
orientation and the iteration runs on ``Wᵀ`` made wide exactly as torch does.

Which matrices: a parameter of kind ``matrix``, two-dimensional, inside a block (``0 ≤ depth <
n_blocks`` in the layout): the Transformer's and GPT's attention in/out projections and FFN
matrices, the MLP's hidden layers, the LSTM's gate matrices. The output head (depth
``n_blocks``) and embeddings (kind ``embedding``) are not. The MLP without an embedding
table reads one-hot inputs with its first layer; that layer is inside block 0 and is treated
as hidden. A fused matrix (q, k and v in one ``[D, 3D]`` matrix) is one matrix, as torch
treats such a parameter.

The rate of a Muon matrix is ``muon_lr_ratio`` × the rate the rate policy gives its column
(group rate × depth multiplier × warm-up × schedule), so Muon composes with layer-wise
rates, depth decay, warm-ups and schedules unchanged; the published pair (Muon 0.02 beside
AdamW 1e-3) is the default ratio 20 on the baseline rates. Decoupled weight decay uses the
same Muon rate, as ``torch.optim.Muon`` does (``p ← p (1 − η λ)``).

The iteration runs in fp32, or in bf16 as torch does when the cohort's ``precision`` is
bf16. Matrices of one (wide) shape are stacked with the run axis into one ``[R·k, m, n]``
batch, so a cohort step runs one batched iteration per distinct shape (three for the paper's
Transformer), never a loop over runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from groklab.models.layout import ParamLayout
from groklab.optim.transforms import Context, State, Transform

# torch.optim.Muon's defaults (from the published recipe)
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
NS_EPS = 1e-7


def muon_matrices(layout: ParamLayout) -> list[str]:
    """The parameters Muon manages, in buffer order: 2-D ``matrix`` parameters inside a
    block (see the module docstring)."""
    return [name for name, info in layout.infos.items()
            if info.kind == "matrix" and len(info.shape) == 2
            and 0 <= info.depth < layout.n_blocks]


def newton_schulz(x: torch.Tensor, steps: int = NS_STEPS,
                  coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                  eps: float = NS_EPS) -> torch.Tensor:
    """``torch.optim.Muon``'s quintic Newton–Schulz iteration on a batch of wide matrices
    ``[K, m, n]`` (m ≤ n), each normalised by its own Frobenius norm first; in ``x``'s dtype."""
    a, b, c = coefficients
    x = x / torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = torch.bmm(x, x.mT)
        update = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.baddbmm(x, update, x, beta=a)
    return x


def adjust_factors(shape: Sequence[int]) -> tuple[float, float]:
    """torch's ``_adjust_lr`` for a groklab ``[in, out]`` matrix, read as torch's ``[out, in]``:
    ("original", "match_rms_adamw")."""
    fan_in, fan_out = shape
    return math.sqrt(max(1.0, fan_out / fan_in)), 0.2 * math.sqrt(max(fan_out, fan_in))


class Orthogonalize(Transform):
    """Muon's momentum and Newton–Schulz step over the columns of the given matrices (the
    input holds exactly those columns, matrix after matrix; wrap in ``Columns``).

    ``hp``: ``momentum`` μ, ``nesterov`` (1 or 0) and ``match_rms`` (1: torch's
    "match_rms_adamw" shape factor, 0: "original"), each ``[R, 1]``. ``dtype``: the
    iteration's dtype (fp32, or bf16 as torch does).
    """

    fusable = False  # Newton–Schulz: batched matmuls, not element-wise work

    def __init__(self, shapes: Sequence[tuple[int, int]], hp: dict[str, torch.Tensor],
                 dtype: torch.dtype = torch.float32):
        super().__init__(hp)
        self.dtype = dtype
        self.mats: list[tuple[int, int, tuple[int, int]]] = []  # (start, end, [in, out])
        start = 0
        for fan_in, fan_out in shapes:
            self.mats.append((start, start + fan_in * fan_out, (fan_in, fan_out)))
            start += fan_in * fan_out
        # matrices of one wide shape share one batched iteration; torch makes Wᵀ ([out, in])
        # wide by transposing it when out > in, so the wide form is W when in < out, else Wᵀ
        self.batches: dict[tuple[int, int], list[int]] = {}
        for j, (_, _, (fan_in, fan_out)) in enumerate(self.mats):
            wide = (fan_in, fan_out) if fan_in < fan_out else (fan_out, fan_in)
            self.batches.setdefault(wide, []).append(j)
        # each batch's shape factors, [2, K]: ("original", "match_rms_adamw") per matrix
        self.factors = {wide: torch.tensor([adjust_factors(self.mats[j][2]) for j in js]).T
                        for wide, js in self.batches.items()}
        self._on: dict[torch.device, dict[tuple[int, int], torch.Tensor]] = {}

    def init(self, params: torch.Tensor) -> State:
        return {"momentum_buffer": torch.zeros_like(params)}

    def _wide(self, u: torch.Tensor, j: int) -> torch.Tensor:
        a, b, (fan_in, fan_out) = self.mats[j]
        w = u[:, a:b].view(-1, fan_in, fan_out)
        return w if fan_in < fan_out else w.mT

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        mu = self.hp["momentum"]
        buf = state["momentum_buffer"]
        buf.lerp_(u, 1 - mu)
        u = torch.where(self.hp["nesterov"] > 0, u.lerp(buf, mu), buf)
        out = torch.empty_like(u)
        R = u.shape[0]
        factors = self._on.get(u.device)
        if factors is None:
            factors = self._on[u.device] = {k: f.to(u.device) for k, f in self.factors.items()}
        match_rms = (self.hp["match_rms"] > 0).view(R, 1, 1, 1)
        for (m, n), js in self.batches.items():
            x = torch.stack([self._wide(u, j) for j in js], 1).to(self.dtype)
            y = newton_schulz(x.view(R * len(js), m, n)).view(R, len(js), m, n)
            original, match = factors[(m, n)].view(2, 1, len(js), 1, 1)
            y = y * torch.where(match_rms, match, original)  # every matrix's factor at once
            for k, j in enumerate(js):
                self._wide(out, j).copy_(y[:, k])
        return out
