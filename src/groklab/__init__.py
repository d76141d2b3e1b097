"""groklab: study and accelerate grokking on algorithmic tasks.

Quick tour::

    import groklab
    df = groklab.run("runs/demo", task="x_plus_y", lr="layerwise", seeds=3, steps=1500)
    groklab.results("runs/demo")
    groklab.study("paper-table1", out="runs/t1", steps=500, seeds=1)  # summary DataFrame
    groklab.report("runs/t1")  # report.md, report.html, figures/*.png

Note: ``groklab.report`` is the function; the subpackage is reached with
``from groklab.report import tables`` (which reads it from ``sys.modules``).
"""

import groklab.report as _report_package  # noqa: F401  (loaded before the name is rebound)
from groklab.api import load_run, make_specs, report, results, run, study
from groklab.engine import run_specs, train_cohort
from groklab.rates import LR_CONFIGS
from groklab.spec import RunSpec
from groklab.store import Store
from groklab.studies import Study, get_study, preset_names
from groklab.tasks import build_task, register_task, task_names

__all__ = ["LR_CONFIGS", "RunSpec", "Store", "Study", "build_task", "get_study", "load_run",
           "make_specs",
           "preset_names", "register_task", "report", "results", "run", "run_specs", "study",
           "task_names", "train_cohort"]
