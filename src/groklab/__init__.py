"""groklab: study and accelerate grokking on algorithmic tasks.

Quick tour::

    import groklab
    df = groklab.run("runs/demo", task="x_plus_y", lr="layerwise", seeds=3, steps=1500)
    groklab.results("runs/demo")
"""

from groklab.api import make_specs, results, run
from groklab.engine import run_specs, train_cohort
from groklab.optim.groups import LR_CONFIGS
from groklab.spec import RunSpec
from groklab.store import Store
from groklab.tasks import build_task, register_task, task_names

__all__ = ["LR_CONFIGS", "RunSpec", "Store", "build_task", "make_specs", "register_task",
           "results", "run", "run_specs", "task_names", "train_cohort"]
