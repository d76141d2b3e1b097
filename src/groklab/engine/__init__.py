"""Training: a cohort of runs as one batched computation, and the runner that feeds the store."""

from groklab.engine.cohort import EvalRow, train_cohort
from groklab.engine.runner import default_device, run_specs

__all__ = ["EvalRow", "train_cohort", "default_device", "run_specs"]
