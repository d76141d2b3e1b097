"""Settings know themselves (issue 26): every run setting is declared once
(``groklab.settings``), and the spec's fields, the command's flags, the optimisers' reads and
the protocol's table all follow the declarations."""

import ast
import inspect
import re
import textwrap
from pathlib import Path

import pytest
import torch
import typer
from conftest import groklab

from groklab.cli import app
from groklab.cli.names import MODELS, OPTIMIZERS, TASKS
from groklab.models import build_model
from groklab.models.layout import ParamLayout
from groklab.optim.chains import CohortHyper, chain_names, optimizer_chain
from groklab.settings import PER_RUN, SETTINGS, When, table
from groklab.spec import RunSpec
from groklab.tasks import build_task

ROOT = Path(__file__).resolve().parents[1]
RUN = typer.main.get_command(app).commands["run"]

# flags whose default is None, meaning "not typed: the setting's default": the model-shape
# flags `run` shares with `lm` (cli/shape.py: lm's default is its size's) and the repeatable
# --lr (a list of configurations)
UNSET_FLAGS = {"n_layers", "d_model", "n_heads", "d_ff", "d_hidden", "activation", "lr"}


def _params_with(flag: str) -> list:
    names = set(flag.split("/"))
    return [p for p in RUN.params if names & {*p.opts, *p.secondary_opts}]


def test_the_spec_is_the_declarations():
    assert list(RunSpec.model_fields) == list(SETTINGS)
    for name, field in RunSpec.model_fields.items():
        assert field.default == SETTINGS[name].default, name
    assert PER_RUN == {name for name, s in SETTINGS.items() if s.per_run}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_setting_has_one_flag_of_run_or_is_set_only(name):
    """One option of `groklab run` per declared flag, named for its setting (so errors and
    `given` name it), at the declared default; a setting without a flag is --set only."""
    s = SETTINGS[name]
    if s.flag is None:
        assert s.set_key or name == "lr_name", name  # lr_name: --lr NAME
        assert [p for p in RUN.params if p.name == name] == []
        return
    (param,) = _params_with(s.flag)
    assert param.name == name
    if name in UNSET_FLAGS:
        assert param.default is None
    else:
        assert param.default == s.default


def test_the_shared_shape_flags_say_the_declared_default():
    for name in UNSET_FLAGS - {"lr", "d_ff"}:
        (param,) = _params_with(SETTINGS[name].flag)
        assert f"default {SETTINGS[name].default}" in param.help, name


BOUNDED = [name for name, s in SETTINGS.items() if s.flag and s.limits]


@pytest.mark.parametrize("name", BOUNDED)
def test_every_flag_has_the_declared_limits(tmp_path, name):
    s = SETTINGS[name]
    kind = float if s.type in (float, float | None) else int
    low = s.ge if s.ge is not None else s.gt
    value = kind(low - (1 if s.ge is not None else 0)) if low is not None else kind(
        s.le + 1 if s.le is not None else s.lt)
    proc = groklab("run", "--out", str(tmp_path / "never"), s.flag, str(value), check=False)
    assert proc.returncode == 2 and not (tmp_path / "never").exists()
    assert proc.stderr.strip() == f"groklab: error: {s.flag} must be {s.limits}, got {value!r}"


def test_the_protocol_table_is_the_declarations():
    text = (ROOT / "docs" / "protocol.md").read_text()
    found = re.search(r"<!-- settings table:[^\n]*-->\n(.*?)\n<!-- end of the settings table -->",
                      text, re.S)
    assert found is not None
    assert found.group(1) == table(), "regenerate it: python -m groklab.settings"


def _optimizer_conditioned(name: str) -> set[str]:
    """The optimisers that read setting ``name`` by its declaration (all: no condition)."""
    for c in SETTINGS[name].conditions:
        if isinstance(c, When) and c.setting == "optimizer":
            return set(c.values) ^ (set(OPTIMIZERS) if c.negate else set())
    return set(OPTIMIZERS)


class _Recording:
    """A spec that notes every setting read from it."""

    def __init__(self, spec: RunSpec, seen: set[str]):
        self._spec, self._seen = spec, seen

    def __getattr__(self, name: str):
        self._seen.add(name)
        return getattr(self._spec, name)


@pytest.mark.parametrize("optimizer", sorted(chain_names()))
def test_each_chain_reads_the_settings_declared_for_it(optimizer):
    """A chain reads exactly the settings declared read by its optimiser and no setting
    declared for another one."""
    spec = RunSpec(p=5, d_model=16, n_heads=2, optimizer=optimizer)
    model = build_model(spec, build_task("x_plus_y", p=5))
    layout = ParamLayout.build(model.param_info(), model.default_groups(), model.n_blocks)
    seen: set[str] = set()
    hyper = CohortHyper([_Recording(spec, seen)], torch.zeros(1, layout.n_columns),
                        torch.zeros(1, 1), layout)
    optimizer_chain(optimizer)(hyper)
    chosen = {n for n in SETTINGS if _optimizer_conditioned(n) != set(OPTIMIZERS)}
    declared = {n for n in chosen if optimizer in _optimizer_conditioned(n)}
    assert seen & chosen == declared


def test_ignored_reasons_names_no_task_model_or_optimizer():
    """Its rules are the declared readers: no text in its code (but its docstring) names a
    task, a model or an optimiser."""
    (function,) = ast.parse(textwrap.dedent(inspect.getsource(RunSpec.ignored_reasons))).body
    code = function.body[1:]  # after the docstring
    texts = {n.value for part in code for n in ast.walk(part)
             if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert texts & {*TASKS, *MODELS, *OPTIMIZERS} == set()
