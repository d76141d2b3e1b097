"""The progress measures of a batch of runs from their parameters (docs/protocol.md §4.1),
as named per-run values: what the engine records at evaluations (engine/measures.py) and
what ``groklab analyze`` computes from a finished run's saved weights.

Names (each ``[R]``):

- ``weight_norm`` and ``weight_norm_<group>``: the L2 norm of all parameters and of each
  learning-rate group's (``measures`` "norms" or "fourier"; every task and model);
- ``embedding_freq_<k>`` (k = 0 … ⌊p/2⌋; 0 is the constant), ``embedding_key_count`` and
  ``embedding_participation``: the spectrum of the residues' input vectors, its number of
  key frequencies and its participation ratio;
- ``logit_freq_<k>``, ``logit_key_count``, ``logit_participation``: the same of the logits
  over all p² pairs along the directions cos/sin(w(x ± y)); its key frequencies are those the
  restricted and excluded losses keep and remove;
- ``restricted_loss``, ``excluded_loss`` and ``full_loss``: cross-entropy on the run's
  training pairs of the restricted, the excluded and the whole logits (eval mode).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from groklab.measures.fourier import (
    KEY_SHARE,
    diagonal_projection,
    key_mask,
    logit_spectrum,
    masked_cross_entropy,
    n_frequencies,
    participation_ratio,
    restricted_excluded,
    spectrum,
)
from groklab.measures.scope import FourierScope
from groklab.models import CohortModel

SPECTRA = ("embedding", "logit")  # the per-frequency metrics: <spectrum>_freq_<k>
LOSSES = ("restricted_loss", "excluded_loss", "full_loss")


def weight_norms(params: Mapping[str, torch.Tensor], groups: Mapping[str, str]
                 ) -> dict[str, torch.Tensor]:
    """Stacked parameters (name -> ``[R, ...]``) and each name's rate group -> the L2 norm
    of all of them (``weight_norm``) and of each group's (``weight_norm_<group>``)."""
    squares: dict[str, torch.Tensor] = {}
    for name, t in params.items():
        s = t.detach().float().pow(2).flatten(1).sum(1)
        g = groups[name]
        squares[g] = squares[g] + s if g in squares else s
    total = torch.stack(list(squares.values())).sum(0)
    return {"weight_norm": total.sqrt(),
            **{f"weight_norm_{g}": v.sqrt() for g, v in squares.items()}}


def spectrum_metrics(which: str, norms: torch.Tensor, share: float = KEY_SHARE
                     ) -> dict[str, torch.Tensor]:
    """Per-frequency norms ``[R, K + 1]`` of spectrum ``which`` ("embedding" or "logit") ->
    their named metrics."""
    out = {f"{which}_freq_{k}": norms[:, k] for k in range(norms.shape[1])}
    out[f"{which}_key_count"] = key_mask(norms, share).sum(1).to(norms.dtype)
    out[f"{which}_participation"] = participation_ratio(norms)
    return out


def stored_spectrum(values: Mapping[str, float], which: str) -> torch.Tensor | None:
    """The per-frequency norms ``[K + 1]`` of spectrum ``which`` among one evaluation's named
    values, or None."""
    prefix = f"{which}_freq_"
    norms = {int(n[len(prefix):]): v for n, v in values.items() if n.startswith(prefix)}
    if not norms:
        return None
    return torch.tensor([norms.get(k, 0.0) for k in range(max(norms) + 1)],
                        dtype=torch.float64)


def is_spectrum_metric(name: str) -> bool:
    """Whether ``name`` is one frequency's norm (``embedding_freq_<k>``, ``logit_freq_<k>``)."""
    return any(name.startswith(f"{which}_freq_") for which in SPECTRA)


@torch.no_grad()
def grid_logits(model: CohortModel, params: Mapping[str, torch.Tensor], scope: FourierScope,
                chunk: int) -> torch.Tensor:
    """Every run's logits on all p² pairs, in eval mode (no dropout, no random draws):
    ``[R, p², C]``, ``chunk`` pairs per forward."""
    tokens, _ = scope.grid()
    any_param = next(iter(params.values()))
    R, device = any_param.shape[0], any_param.device
    tokens = tokens.to(device)
    parts = [model.forward(dict(params), tokens[None, a:a + chunk].expand(R, -1, -1),
                           train=False, rng=None).float()
             for a in range(0, len(tokens), chunk)]
    return torch.cat(parts, 1)


@torch.no_grad()
def fourier_measures(model: CohortModel, params: Mapping[str, torch.Tensor],
                     scope: FourierScope, train_mask: torch.Tensor, *, chunk: int,
                     key: Sequence[int] | None = None, share: float = KEY_SHARE
                     ) -> dict[str, torch.Tensor]:
    """The spectra of the residues' input vectors and of the logits, and the restricted,
    excluded and full losses on the training pairs (``train_mask`` ``[R, p²]``, pair index
    x·p + y). The key frequencies the losses use are each run's logit key frequencies
    (``share`` of the logit spectrum's norm²) unless ``key`` gives them for every run."""
    device = train_mask.device
    vectors = model.input_vectors(dict(params), scope.residue_tokens().to(device),
                                  scope.positions).float()
    out = spectrum_metrics("embedding", spectrum(vectors), share)
    logits = grid_logits(model, params, scope, chunk)
    coefficients = diagonal_projection(logits, scope.sign)
    norms = logit_spectrum(coefficients)
    out |= spectrum_metrics("logit", norms, share)
    if key is None:
        mask = key_mask(norms, share)
    else:
        mask = torch.zeros_like(norms, dtype=torch.bool)
        mask[:, [k for k in key if 0 < k <= n_frequencies(scope.p)]] = True
    restricted, excluded = restricted_excluded(logits, mask, scope.sign, coefficients)
    labels = scope.grid()[1].to(device)
    for name, table in zip(LOSSES, (restricted, excluded, logits), strict=True):
        out[name] = masked_cross_entropy(table, labels, train_mask)
    return out


def measure(kind: str, model: CohortModel, params: Mapping[str, torch.Tensor],
            groups: Mapping[str, str], scope: FourierScope | None = None,
            train_mask: torch.Tensor | None = None, *, chunk: int = 1024,
            key: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """The measures of ``kind`` ("norms" or "fourier") of the runs whose stacked parameters
    are ``params`` (see the module docstring); "fourier" needs the task's ``scope`` and the
    runs' ``train_mask``."""
    out = weight_norms(params, groups)
    if kind == "fourier":
        if scope is None or train_mask is None:
            raise ValueError("the Fourier measures need the task's scope and the training pairs")
        out |= fourier_measures(model, params, scope, train_mask, chunk=chunk, key=key)
    return out
