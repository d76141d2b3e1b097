"""The embedding study's mechanics (docs/protocol.md §5 and §6.7): largest singular values,
token update frequencies, the adaptive embedding rate and the diagnostics recorded.

Matrices. ``E`` is the token-embedding table ``tok_emb`` ``[V, D]``; ``W`` is the first
weight matrix downstream of it, named by the model's ``embedding_pair()``: the Transformer's
block-0 in-projection (q, k and v together, ``[D, 3D]``), the MLP's first hidden layer
(``[T·D, H]``), the LSTM's first input-to-hidden matrix (``[D, 4H]``).

σ_max is estimated by power iteration on ``AᵀA``, batched over the cohort: 100 iterations
from the all-ones vector the first time, then 20 iterations warm-started from the previous
vector. The count is fixed (never "until the cohort converges"), so a run's estimate does
not depend on its cohort mates; it is accurate to far better than 1e-3 relative
(tests/test_embedding.py checks it against ``torch.linalg.svdvals``).

Update frequency. A batch updates row v of ``E`` when token v occurs in it (any position).
``f_E`` is the fraction of the V rows updated, averaged over the batches since the last
recompute (at the first recompute: the first batch); ``f_W = 1`` (every batch updates all
of W). Every row's running count of updating batches gives the spread diagnostics.

Adaptive rate (``embedding_lr = "adaptive"``). Before update t, for each adaptive run with
t a multiple of its ``embedding_lr_every`` (N): η_E = η_W · c · (σ_max(E) / σ_max(W)) ·
(f_W / f_E), where η_W is the base rate the run's configuration gives W's group and block
(warm-up and schedule then multiply η_E as every other rate). η_E replaces the base rate
of every slot of E's group (token and position embeddings), so it holds until the next
recompute. Runs with a fixed rate in the same cohort keep theirs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from groklab.engine.hooks import CohortView, HookResult
from groklab.engine.params import FlatParams
from groklab.models import CohortModel
from groklab.optim.rate_policy import RatePolicy
from groklab.records import DIAGNOSTICS
from groklab.spec import RunSpec

FIRST_ITERS = 100
WARM_ITERS = 20


def sigma_max(a: torch.Tensor, v: torch.Tensor | None = None, iters: int = FIRST_ITERS
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest singular value of each ``a[r]`` (``[R, m, n]``) by power iteration on
    ``aᵀa`` from ``v`` (``[R, n]``; all ones when None) -> (``[R]``, the new ``v``)."""
    a = a.detach().float()
    if v is None:
        v = torch.ones(a.shape[0], a.shape[2], device=a.device)
    v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp(min=1e-30)
    for _ in range(iters):
        w = torch.bmm(a.transpose(1, 2), torch.bmm(a, v.unsqueeze(2))).squeeze(2)
        v = w / torch.linalg.vector_norm(w, dim=1, keepdim=True).clamp(min=1e-30)
    sigma = torch.linalg.vector_norm(torch.bmm(a, v.unsqueeze(2)).squeeze(2), dim=1)
    return sigma, v


class EmbeddingMonitor:
    """Per run: token update counts, f_E since the last recompute, σ_max(E) and σ_max(W)
    (warm-started vectors), and the adaptive embedding rate where a run asks for it."""

    def __init__(self, specs: Sequence[RunSpec], pair: tuple[str, str], vocab_size: int,
                 policy: RatePolicy, device: torch.device):
        self.e_name, self.w_name = pair
        self.vocab = vocab_size
        self.policy = policy
        R = len(specs)
        self.adaptive = torch.tensor([s.embedding_lr == "adaptive" for s in specs])
        self.every = torch.tensor([s.embedding_lr_every for s in specs])
        self.c = torch.tensor([s.embedding_lr_c for s in specs], dtype=torch.float64)
        layout = policy.layout
        e_group = layout.groups[self.e_name]
        self.e_slots = [i for i, (g, _) in enumerate(policy.slots) if g == e_group]
        self.w_slot = policy.slot_of[self.w_name]
        self.eta_w = policy.slot_rates[:, self.w_slot].clone()  # [R] float64, configured
        self.updates = torch.zeros(R, vocab_size, device=device)  # batches updating each row
        self.f_sum = torch.zeros(R, device=device)  # on the device: no sync per step
        self.f_n = torch.zeros(R, dtype=torch.float64)  # batches in f_sum
        # warm-start vectors (E's, W's) of the rate and of the diagnostics, kept apart so that
        # recording diagnostics never changes a run's rate; ``warm``: a run's vector of that
        # purpose has been computed once (else its next estimate starts from all ones)
        d_e = self.d_of(policy.layout, self.e_name)
        d_w = self.d_of(policy.layout, self.w_name)
        self.vectors = {p: [torch.ones(R, d_e, device=device), torch.ones(R, d_w, device=device)]
                        for p in ("rate", "diag")}
        self.warm = {p: [False] * R for p in ("rate", "diag")}
        self.ratio = self.eta_ratio()  # η_E / η_W now

    @staticmethod
    def d_of(layout: object, name: str) -> int:
        """The number of columns of matrix ``name`` (its power-iteration vector's length)."""
        return int(layout.infos[name].shape[-1])  # type: ignore[attr-defined]

    # -- per batch ----------------------------------------------------------------------------
    def observe(self, tokens: torch.Tensor) -> None:
        """Count the rows a batch of tokens ``[R, B, T]`` updates."""
        R = tokens.shape[0]
        present = torch.zeros(R, self.vocab, device=tokens.device)
        present.scatter_(1, tokens.reshape(R, -1), 1.0)
        self.updates += present
        self.f_sum += present.sum(1) / self.vocab
        self.f_n += 1

    def before_update(self, steps: torch.Tensor, params: FlatParams) -> None:
        """Recompute the adaptive runs' embedding rate where the run's own update count
        (``steps``, ``[R]``) is a multiple of its N."""
        due = self.adaptive & (steps % self.every == 0)
        if not bool(due.any()):
            return
        s_e, s_w = self.sigmas(params, "rate")
        f_e = self.f_sum.double().cpu() / self.f_n.clamp(min=1)
        eta_e = self.eta_w * self.c * (s_e.double().cpu() / s_w.double().cpu()) / f_e
        rates = self.policy.slot_rates.clone()
        for slot in self.e_slots:
            rates[:, slot] = torch.where(due, eta_e, rates[:, slot])
        self.policy.set_slot_rates(rates)
        self.f_sum = torch.where(due.to(self.f_sum.device), 0.0, self.f_sum)
        self.f_n = torch.where(due, torch.zeros_like(self.f_n), self.f_n)
        self.ratio = self.eta_ratio()

    # -- measurements -----------------------------------------------------------------------
    def sigmas(self, params: FlatParams, purpose: str, rows: Sequence[int] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """σ_max(E) and σ_max(W) of the runs at ``rows`` (None: all; ``params`` holds those
        runs only), each warm-started from its own vector of the same ``purpose`` ("rate"
        or "diag"): ``FIRST_ITERS`` from all ones the first time, then ``WARM_ITERS``."""
        views = params.views
        R = len(self.warm[purpose])
        rows = list(range(R)) if rows is None else list(rows)
        s_e = torch.empty(len(rows), device=self.updates.device)
        s_w = torch.empty_like(s_e)
        vecs = self.vectors[purpose]
        for warm in (False, True):
            at = [i for i, r in enumerate(rows) if self.warm[purpose][r] == warm]
            if not at:
                continue
            iters = WARM_ITERS if warm else FIRST_ITERS
            k = torch.tensor(at, device=self.updates.device)
            k_rows = torch.tensor([rows[i] for i in at], device=self.updates.device)
            whole = len(at) == len(rows)
            e, w = views[self.e_name], views[self.w_name]
            if not whole:
                e, w = e.index_select(0, k), w.index_select(0, k)
            a, va = sigma_max(e, vecs[0][k_rows] if warm else None, iters)
            b, vb = sigma_max(w, vecs[1][k_rows] if warm else None, iters)
            s_e[k], s_w[k] = a, b
            vecs[0][k_rows], vecs[1][k_rows] = va, vb
            for i in at:
                self.warm[purpose][rows[i]] = True
        return s_e, s_w

    def eta_ratio(self) -> torch.Tensor:
        """η_E / η_W of every run's current base rates (``[R]``)."""
        rates = self.policy.slot_rates
        return rates[:, self.e_slots[0]] / rates[:, self.w_slot]

    def diagnostics_hook(self, state: CohortView, step: int,
                         metrics: dict[str, torch.Tensor]) -> HookResult:
        """An evaluation hook recording the diagnostics (docs/protocol.md §6.7)."""
        return HookResult(metrics=self.diagnostics(state.params, state.index))

    def diagnostics(self, params: FlatParams, rows: Sequence[int] | None = None
                    ) -> dict[str, torch.Tensor]:
        """The named per-run metrics recorded at an evaluation, for the runs at ``rows``
        (None: all; ``params`` holds those runs only)."""
        views = params.views
        s_e, s_w = self.sigmas(params, "diag", rows)
        k = None if rows is None else torch.tensor(list(rows), device=self.updates.device)
        counts = self.updates if k is None else self.updates[k]
        ratio = self.ratio if k is None else self.ratio[k.cpu()]
        mean = counts.mean(1)
        values = (s_e, s_w,  # in the order of their names, records.DIAGNOSTICS
                  torch.linalg.matrix_norm(views[self.e_name].detach()),
                  torch.linalg.matrix_norm(views[self.w_name].detach()),
                  ratio.float(),
                  counts.std(1) / mean.clamp(min=1e-12),
                  counts.min(1).values / mean.clamp(min=1e-12))
        return dict(zip(DIAGNOSTICS, values, strict=True))

    # -- per-run state (engine/rows.py) ----------------------------------------------------
    def rows(self) -> dict:
        return {"updates": self.updates, "f_sum": self.f_sum, "f_n": self.f_n,
                "vectors": {p: {"E": v[0], "W": v[1]} for p, v in self.vectors.items()},
                "warm": self.warm}

    def loaded(self, j: int) -> None:
        self.ratio = self.eta_ratio()  # the policy's rates came back with the run


def embedding_monitor(specs: Sequence[RunSpec], model: CohortModel, policy: RatePolicy,
                      vocab_size: int, device: torch.device) -> EmbeddingMonitor | None:
    """The cohort's monitor when a run uses the adaptive rate or records diagnostics (and
    the model has an embedding table); else None."""
    wanted = any(s.embedding_lr == "adaptive" or s.diagnostics for s in specs)
    pair = model.embedding_pair()
    if not wanted or pair is None or pair[0] not in policy.layout.infos:
        return None
    return EmbeddingMonitor(specs, pair, vocab_size, policy, device)


