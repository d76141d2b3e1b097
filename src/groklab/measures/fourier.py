"""The Fourier analysis of Z_p behind the progress measures (docs/protocol.md §4.1).

Pure functions over tensors, after Nanda et al., "Progress measures for grokking via
mechanistic interpretability" (2023):

- ``fourier_basis(p)``: the real orthonormal basis of functions on Z_p, rows in the order
  constant, cos 1, sin 1, cos 2, sin 2, ...; for even p the last frequency p/2 has its cosine
  (−1)^x only (its sine is zero).
- ``spectrum``: the norm per frequency of vectors indexed by the residues (an embedding
  ``[..., p, D]``); ``key_frequencies`` the fewest frequencies holding a share (90 %) of the
  norm² of the non-constant part, ``participation_ratio`` its effective number of
  frequencies.
- ``diagonal_projection``: logits over all p² pairs projected on the directions
  cos(2πw(x ± y)/p) and sin(2πw(x ± y)/p) of the (x, y) plane: Nanda's cos(w(x+y)) and
  sin(w(x+y)) components (his (cos x cos y − sin x sin y)/√2 and (sin x cos y + cos x
  sin y)/√2 in the 2-D Fourier basis), computed as a 1-D transform of the sums of the logits
  along each diagonal x ± y = s, for every output class; ``logit_spectrum`` the norm of
  those components per frequency w.
- ``restricted_excluded``: the restricted logits (the constant and the key frequencies'
  components) and the excluded logits (the logits without those components).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

KEY_SHARE = 0.9  # key frequencies: the fewest that hold this share of the norm²


@lru_cache(maxsize=16)
def _basis64(p: int) -> torch.Tensor:
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.full((p,), 1.0 / math.sqrt(p), dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        angle = 2 * math.pi * k * x / p
        rows.append(torch.cos(angle))
        if 2 * k != p:  # for even p, sin(π x) is zero: frequency p/2 has a cosine only
            rows.append(torch.sin(angle))
    basis = torch.stack(rows)
    return basis / torch.linalg.vector_norm(basis, dim=1, keepdim=True)


def fourier_basis(p: int, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[p, p]``: row i is the i-th basis function over x = 0..p−1 (orthonormal rows; built
    in float64, then cast)."""
    return _basis64(p).to(device=device, dtype=dtype)


def basis_frequencies(p: int) -> torch.Tensor:
    """``[p]`` int64: the frequency of each row of ``fourier_basis(p)`` (0 for the constant)."""
    freqs = [0]
    for k in range(1, p // 2 + 1):
        freqs += [k] if 2 * k == p else [k, k]
    return torch.tensor(freqs)


def n_frequencies(p: int) -> int:
    """The non-constant frequencies of Z_p: 1..⌊p/2⌋."""
    return p // 2


def spectrum(vectors: torch.Tensor) -> torch.Tensor:
    """``[..., p, D]`` vectors indexed by residue -> ``[..., ⌊p/2⌋ + 1]``: for frequency k the
    norm of their projections on the basis functions of frequency k (cos and sin together),
    ‖(B_cos,k E, B_sin,k E)‖_F; index 0 is the constant's."""
    p = vectors.shape[-2]
    basis = fourier_basis(p, vectors.device, vectors.dtype)
    coefficients = torch.matmul(basis, vectors)  # [..., p rows, D]
    energy = coefficients.pow(2).sum(-1)  # [..., p rows]
    freqs = basis_frequencies(p).to(vectors.device)
    out = torch.zeros(*energy.shape[:-1], n_frequencies(p) + 1, device=vectors.device,
                      dtype=energy.dtype)
    return out.index_add_(-1, freqs, energy).sqrt()


def key_mask(norms: torch.Tensor, share: float = KEY_SHARE) -> torch.Tensor:
    """``[..., K + 1]`` per-frequency norms (``spectrum``) -> bool mask of the key
    frequencies: the fewest non-constant frequencies whose norm² sums to at least ``share``
    of all non-constant frequencies' norm² (largest first; ties: the lower frequency first).
    Never the constant; empty when the non-constant norm is zero."""
    energy = norms[..., 1:].pow(2)
    order = torch.sort(energy, dim=-1, descending=True, stable=True).indices
    ranked = energy.gather(-1, order)
    total = energy.sum(-1, keepdim=True)
    before = ranked.cumsum(-1) - ranked  # norm² of the frequencies ranked above
    chosen = (before < share * total) & (total > 0)
    mask = torch.zeros_like(chosen).scatter(-1, order, chosen)
    return torch.cat([torch.zeros_like(mask[..., :1]), mask], -1)


def key_frequencies(norms: torch.Tensor, share: float = KEY_SHARE) -> list[int]:
    """The key frequencies of one spectrum (``[K + 1]``), ascending (see ``key_mask``)."""
    return key_mask(norms, share).nonzero().flatten().tolist()


def participation_ratio(norms: torch.Tensor) -> torch.Tensor:
    """The effective number of non-constant frequencies, (Σ e_k)² / Σ e_k² with e_k the norm²
    of frequency k: 1 when one frequency holds everything, ⌊p/2⌋ when all hold the same
    (0 for a zero spectrum)."""
    energy = norms[..., 1:].pow(2)
    num = energy.sum(-1).pow(2)
    den = energy.pow(2).sum(-1)
    return torch.where(den > 0, num / den.clamp(min=torch.finfo(den.dtype).tiny), 0.0)


def diagonal_index(p: int, sign: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[p²]``: (x + sign·y) mod p of pair index x·p + y."""
    x = torch.arange(p, device=device).repeat_interleave(p)
    y = torch.arange(p, device=device).repeat(p)
    return (x + sign * y) % p


def diagonal_projection(logits: torch.Tensor, sign: int) -> torch.Tensor:
    """Coefficients of ``logits`` ``[R, p², C]`` (pair index x·p + y) on the unit directions
    u_i(x, y) = b_i(x + sign·y) / √p of the (x, y) plane, b_i the rows of
    ``fourier_basis(p)`` -> ``[R, p, C]``: row 0 the constant's, then cos and sin of
    w(x ± y) for w = 1, 2, ... (these directions are orthonormal; the logits' component
    along them is ``diagonal_component``)."""
    p = round(math.sqrt(logits.shape[1]))
    sums = diagonal_sums(logits, sign)
    return torch.matmul(fourier_basis(p, logits.device, logits.dtype), sums) / math.sqrt(p)


def diagonal_sums(logits: torch.Tensor, sign: int) -> torch.Tensor:
    """``[R, p², C]`` -> ``[R, p, C]``: the sum of the logits over the pairs with
    x + sign·y ≡ s, for every s."""
    p = round(math.sqrt(logits.shape[1]))
    index = diagonal_index(p, sign, logits.device)
    out = torch.zeros(logits.shape[0], p, logits.shape[2], device=logits.device,
                      dtype=logits.dtype)
    return out.index_add_(1, index, logits)


def diagonal_component(coefficients: torch.Tensor, rows: torch.Tensor, sign: int
                       ) -> torch.Tensor:
    """The part of the logits along the directions of the basis rows selected by ``rows``
    (bool ``[R, p]``), from their coefficients ``[R, p, C]`` -> ``[R, p², C]``."""
    p = coefficients.shape[1]
    basis = fourier_basis(p, coefficients.device, coefficients.dtype)
    kept = coefficients * rows.unsqueeze(-1).to(coefficients.dtype)
    by_diagonal = torch.matmul(basis.T, kept) / math.sqrt(p)  # [R, p (s), C]
    return by_diagonal[:, diagonal_index(p, sign, coefficients.device)]


def logit_spectrum(coefficients: torch.Tensor) -> torch.Tensor:
    """Coefficients of the logits on the x ± y directions (``diagonal_projection``,
    ``[R, p, C]``) -> ``[R, ⌊p/2⌋ + 1]``: for frequency w the norm of the logits' component
    along cos and sin of w(x ± y), over all output classes (index 0: the constant's)."""
    p = coefficients.shape[1]
    energy = coefficients.pow(2).sum(-1)  # [R, p rows]
    out = torch.zeros(energy.shape[0], n_frequencies(p) + 1, device=energy.device,
                      dtype=energy.dtype)
    return out.index_add_(1, basis_frequencies(p).to(energy.device), energy).sqrt()


def restricted_excluded(logits: torch.Tensor, key: torch.Tensor, sign: int,
                        coefficients: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[R, p², C]`` and key frequencies (bool ``[R, ⌊p/2⌋ + 1]``, index 0 ignored)
    -> (restricted, excluded) logits, both ``[R, p², C]`` (``coefficients``: the logits'
    ``diagonal_projection`` when already computed).

    Restricted: the constant component (the mean over all pairs, Nanda's bias correction)
    plus the components along cos/sin(w(x ± y)) of the key frequencies w. Excluded: the
    logits minus those key components (the constant stays)."""
    p = round(math.sqrt(logits.shape[1]))
    freqs = basis_frequencies(p).to(logits.device)
    rows = key[:, freqs].clone()  # [R, p] rows of the key frequencies
    rows[:, 0] = False
    if coefficients is None:
        coefficients = diagonal_projection(logits, sign)
    key_part = diagonal_component(coefficients, rows, sign)
    constant = logits.mean(1, keepdim=True)
    return constant + key_part, logits - key_part


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
                         ) -> torch.Tensor:
    """Mean softmax cross-entropy per run over the pairs in ``mask``: logits ``[R, n, C]``,
    labels ``[n]``, mask ``[R, n]`` (0/1) -> ``[R]``."""
    R, n, C = logits.shape
    ce = F.cross_entropy(logits.reshape(R * n, C), labels.repeat(R),
                         reduction="none").view(R, n)
    m = mask.to(ce.dtype)
    return (ce * m).sum(1) / m.sum(1).clamp(min=1)
