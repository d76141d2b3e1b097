"""Training: a cohort of runs as one batched computation, and the runner that feeds the store."""

from groklab.engine.cohort import train_cohort
from groklab.engine.hooks import Hook, HookResult, stop_when
from groklab.engine.runner import default_device, run_specs
from groklab.engine.state import CohortState, RunEnd
from groklab.records import EvalRow

__all__ = ["CohortState", "EvalRow", "Hook", "HookResult", "RunEnd", "default_device",
           "run_specs", "stop_when", "train_cohort"]
