"""groklab: study and accelerate grokking on algorithmic tasks.

Quick tour::

    import groklab
    df = groklab.run("runs/demo", task="x_plus_y", lr="layerwise", seeds=3, steps=1500)
    groklab.results("runs/demo")
    groklab.study("paper-table1", out="runs/t1", steps=500, seeds=1)  # summary DataFrame
    groklab.report("runs/t1")  # report.md, report.html, figures/*.png

The public names are imported on first use (PEP 562), so ``import groklab`` and the
``groklab`` command start without loading torch, pandas or matplotlib until a name that
needs them is used.

``groklab.report`` is the function: importing the subpackage of the same name (``from
groklab.report import tables``, ``import groklab.report.figures``) works as usual and
leaves the function in place (see ``_Package``).
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names below are (read by type checkers and tests/test_layers.py)
    from groklab.api import curves, load_run, make_specs, report, results, run, study
    from groklab.engine import run_specs, train_cohort
    from groklab.rates import LR_CONFIGS
    from groklab.spec import RunSpec
    from groklab.store import Store
    from groklab.studies import Study, get_study, preset_names
    from groklab.tasks import build_task, register_task, task_names

# public name -> the module that defines it
_WHERE = {
    "LR_CONFIGS": "groklab.rates", "RunSpec": "groklab.spec", "Store": "groklab.store",
    "Study": "groklab.studies", "build_task": "groklab.tasks", "get_study": "groklab.studies",
    "curves": "groklab.api",
    "load_run": "groklab.api", "make_specs": "groklab.api", "preset_names": "groklab.studies",
    "register_task": "groklab.tasks", "report": "groklab.api", "results": "groklab.api",
    "run": "groklab.api", "run_specs": "groklab.engine", "study": "groklab.api",
    "task_names": "groklab.tasks", "train_cohort": "groklab.engine",
}

__all__ = ["LR_CONFIGS", "RunSpec", "Store", "Study", "build_task", "curves", "get_study",
           "load_run",
           "make_specs", "preset_names", "register_task", "report", "results", "run",
           "run_specs", "study", "task_names", "train_cohort"]  # = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (PEP 562)."""
    if name not in _WHERE:
        raise AttributeError(f"module 'groklab' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name]), name)
    if name != "report":  # the property of _Package serves it
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(_WHERE) | {n for n in globals() if n.startswith("__")})


class _Package(types.ModuleType):
    """The ``groklab`` module's type: ``groklab.report`` is always the function
    ``groklab.api.report``. Importing the subpackage ``groklab.report`` makes Python bind it
    as an attribute of this package; the setter takes that binding (the subpackage stays in
    ``sys.modules``, where ``from groklab.report import ...`` finds it)."""

    @property
    def report(self) -> Any:
        return __getattr__("report")

    @report.setter
    def report(self, value: Any) -> None:
        if not isinstance(value, types.ModuleType):
            raise AttributeError("groklab.report is the report function; it cannot be set")


sys.modules[__name__].__class__ = _Package
