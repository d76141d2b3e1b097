"""Plug-in doors (docs/design.md, Plug-in doors): what a task or model registers beside its
builder reaches the core through the registries, by name: a validation hook is called when
a spec is built, a task's output hook when one of its runs is finished, a model's reference
run is what ``groklab bench`` times, and the built-in plug-ins enter only through them."""

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from groklab.bench import reference_specs
from groklab.engine import run_specs
from groklab.lm.outputs import gpt_for
from groklab.lm.settings import lm_settings
from groklab.models import build_model, model_hooks, register_model
from groklab.models import registry as model_registry
from groklab.models.perceptron import build_mlp
from groklab.spec import RunSpec
from groklab.store import Store
from groklab.tasks import (
    Outputs,
    TaskData,
    build_task,
    language_tasks,
    register_task,
    task_hooks,
)
from groklab.tasks import base as task_registry
from groklab.tasks.base import binary_task

SMALL = dict(p=5, d_model=8, n_heads=2, n_layers=1, d_hidden=16, steps=3, batch_size=4,
             eval_every=1, warmup=0)


@pytest.fixture
def registries(monkeypatch):
    """The task and model registries as they are, restored after the test (so a probe
    registered here is gone for the next)."""
    monkeypatch.setattr(task_registry._TASKS, "_values", dict(task_registry._TASKS._values))
    monkeypatch.setattr(model_registry._MODELS, "_values", dict(model_registry._MODELS._values))


def x_plus_y(p: int) -> TaskData:
    """x + y mod p (the probe tasks' table)."""
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    return binary_task("x_plus_y", a, b, (a + b) % p, p)


def test_a_task_check_is_called_when_a_spec_is_built(registries):
    seen = []

    def check(spec):
        seen.append((spec.task, spec.model, spec.p))
        if spec.p == 7:
            raise ValueError("probe_check_task refuses p 7")

    register_task("probe_check_task", check=check)(lambda p: x_plus_y(p))
    RunSpec(task="probe_check_task", **SMALL)
    assert seen == [("probe_check_task", "transformer", 5)]
    with pytest.raises(ValidationError, match="probe_check_task refuses p 7"):
        RunSpec(task="probe_check_task", **(SMALL | {"p": 7}))
    RunSpec(task="x_plus_y", **(SMALL | {"p": 7}))  # another task's runs never see it
    assert len(seen) == 2


def test_a_model_check_is_called_when_a_spec_is_built(registries):
    def check(spec):
        if spec.n_layers > 1:
            raise ValueError("probe_model takes one hidden layer")

    def build(task, *, n_layers, d_model, d_hidden, activation, embedding):
        return build_mlp(task, n_layers=n_layers, d_model=d_model, d_hidden=d_hidden,
                         activation=activation, embedding=embedding)

    register_model("probe_model", check=check)(build)
    RunSpec(model="probe_model", **SMALL)
    with pytest.raises(ValidationError, match="probe_model takes one hidden layer"):
        RunSpec(model="probe_model", **(SMALL | {"n_layers": 2}))
    RunSpec(model="mlp", **(SMALL | {"n_layers": 2}))


def test_a_task_output_hook_is_called_at_finishing_and_recorded(registries, tmp_path):
    calls = []

    def outputs(spec, task, model, params, device):
        calls.append((spec.run_id, task.name, type(model).__name__, device))
        assert set(params) == set(model.shapes())  # one run's final weights, unstacked
        assert all(v.shape == model.shapes()[k] for k, v in params.items())
        norm = sum(float(v.float().norm()) for v in params.values())
        return Outputs({"probe_norm": norm}, {"probe": f"seed {spec.seed}"})

    register_task("probe_outputs", outputs=outputs)(lambda p: x_plus_y(p))
    specs = [RunSpec(task="probe_outputs", model="mlp", seed=s, **SMALL) for s in (0, 1)]
    plain = RunSpec(task="x_plus_y", model="mlp", **SMALL)  # no hook: nothing added
    run_specs([*specs, plain], tmp_path, device="cpu", progress=False)
    assert sorted(calls) == sorted((s.run_id, "x_plus_y", "MLP", "cpu") for s in specs)
    with Store(tmp_path, create=False) as store:
        for s in specs:
            assert store.texts(s.run_id) == {"probe": f"seed {s.seed}"}
            [(step, name, value)] = store.metrics(s.run_id)
            assert (step, name) == (3, "probe_norm") and value > 0
        assert store.texts(plain.run_id) == {} and store.metrics(plain.run_id) == []
    run_specs(specs, tmp_path, device="cpu", progress=False)  # finished: not called again
    assert len(calls) == 2


def test_the_language_model_enters_through_its_doors():
    text = task_hooks("text")
    assert text.language_model and text.outputs is not None
    assert language_tasks() == {"text"}
    assert all(task_hooks(t).outputs is None and not task_hooks(t).language_model
               for t in ("x_plus_y", "permutation", "sum"))
    assert model_hooks("gpt").check is text.check  # one check, registered by both
    assert model_hooks("transformer").reference is None
    [ref] = reference_specs(1, "fp32", 10, "gpt")
    assert ref == RunSpec(**(lm_settings("cpu") | dict(eval_every=10, eval_batches=1,
                                                        steps=10, precision="fp32", seed=0)))


def test_the_sample_command_builds_the_model_a_run_trained(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("abcab\ncabbac " * 40, encoding="utf-8")
    spec = RunSpec(task="text", model="gpt", corpus=str(path), context=8, n_layers=1,
                   d_model=16, n_heads=2)
    task = build_task(spec.task, **spec.task_args())
    assert gpt_for(spec.model_dump(), task.alphabet) == build_model(spec, task)


def test_the_worked_example_of_the_design_notes_records_its_output(registries, tmp_path):
    design = (Path(__file__).resolve().parents[1] / "docs" / "design.md").read_text()
    example = design.split("### Worked example: a task with its own output")[1]
    exec(example.split("```python")[1].split("```")[0], {})  # registers x_times_y
    spec = RunSpec(task="x_times_y", model="mlp", **SMALL)
    run_specs([spec], tmp_path, device="cpu", progress=False)
    with Store(tmp_path, create=False) as store:
        recorded = store.metrics(spec.run_id)
    assert [(step, name) for step, name, _ in recorded] == [(3, f"acc_class_{c}")
                                                            for c in range(5)]
    assert all(0 <= value <= 1 for _, _, value in recorded)
