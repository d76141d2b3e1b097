"""Progress measures (docs/protocol.md §4.1): the Fourier spectra of the residues' input
vectors and of the logits, the restricted and excluded losses of Nanda et al. (2023), and
weight norms; pure functions over tensors, below the engine (which records them at
evaluations) and the report and ``groklab analyze`` (which read and draw them)."""

from groklab.measures.compute import (
    LOSSES,
    SPECTRA,
    fourier_measures,
    grid_logits,
    is_spectrum_metric,
    measure,
    spectrum_metrics,
    stored_spectrum,
    weight_norms,
)
from groklab.measures.fourier import (
    KEY_SHARE,
    fourier_basis,
    key_frequencies,
    key_mask,
    logit_spectrum,
    participation_ratio,
    restricted_excluded,
    spectrum,
)
from groklab.measures.scope import FourierScope, MeasureError, fourier_scope

MEASURES = ("none", "norms", "fourier")

__all__ = ["KEY_SHARE", "LOSSES", "MEASURES", "SPECTRA", "FourierScope", "MeasureError",
           "fourier_basis", "fourier_measures", "fourier_scope", "grid_logits",
           "is_spectrum_metric", "key_frequencies", "key_mask", "logit_spectrum", "measure",
           "participation_ratio", "restricted_excluded", "spectrum", "spectrum_metrics",
           "stored_spectrum", "weight_norms"]
