"""Run identity: semantics version plus the settings that matter (docs/design.md, decision 1)."""

import math
import tempfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from groklab.spec import AS_UNSET, PER_RUN, SEMANTICS, RunSpec

# ids written by groklab 0.1 (computed with that release's code): version-1 ids never change
V1_IDS = {
    "ceb72fe3360d4686": dict(),
    "dad6a2e7bbd46fc0": dict(task="permutation"),
    "6da739f12369fffe": dict(lr=(8e-4, 2e-3, 3e-3), seed=2, steps=1500),
}

CORPUS = Path(tempfile.mkdtemp()) / "corpus.txt"  # a text task's own corpus
CORPUS.write_text("a small corpus of text for the spec tests. " * 30, encoding="utf-8")

# a valid non-default value for every field (a new field must be added here, which makes
# its author decide whether it is per-run or structural)
OTHER = dict(task="x_minus_y", p=89, k=4, operands=3, n_examples=5000, max_len=12,
             init_from="0123456789abcdef", train_fraction=0.3, model="mlp", n_layers=3,
             d_model=64, n_heads=2, d_ff=100, d_hidden=64, activation="gelu", embedding=False,
             dropout=0.1, embedding_lr="adaptive", embedding_lr_c=2.0, embedding_lr_every=10,
             sampling="balanced", diagnostics=True, measures="fourier", measures_every=3,
             optimizer="adam", beta1=0.8, beta2=0.9,
             eps=1e-6,
             weight_decay=0.1, decay_params="matrices", momentum=0.5, nesterov=True,
             grad_clip=1.0, grad_filter="ema", filter_alpha=0.9, filter_window=10,
             filter_lamb=3.0, lr=(1e-4, 1e-3, 1e-2), lr_name="x", group_rules=((r".", "lower"),),
             warmup=5, lr_schedule="cosine", min_lr_ratio=0.2, lr_depth="linear",
             lr_depth_gamma=0.5, lr_depth_floor=0.3, steps=100, batch_size=64, eval_every=5,
             precision="bf16", semantics=1, seed=4, stop_val_acc=0.9, stop_patience=3,
             corpus=str(CORPUS), context=8, eval_batches=3, init_optimizer="carried",
             muon_lr_ratio=5.0, muon_momentum=0.5, muon_nesterov=False,
             muon_adjust_lr="match_rms_adamw", grad_ortho=True, loss="stablemax")
# the settings a field needs to be in effect (not ignored)
NEEDS = dict(k={"task": "permutation"}, momentum={"optimizer": "sgd"},
             nesterov={"optimizer": "sgd", "momentum": 0.5}, filter_alpha={"grad_filter": "ema"},
             filter_window={"grad_filter": "ma"}, filter_lamb={"grad_filter": "ema"},
             min_lr_ratio={"lr_schedule": "cosine"}, lr_depth_gamma={"lr_depth": "exponential"},
             lr_depth_floor={"lr_depth": "linear"}, d_hidden={"model": "mlp"},
             activation={"model": "mlp"}, embedding={"model": "mlp"},
             embedding_lr_c={"embedding_lr": "adaptive"},
             embedding_lr_every={"embedding_lr": "adaptive"},
             operands={"task": "sum"}, n_examples={"task": "sum"},
             stop_patience={"stop_val_acc": 0.9},
             corpus={"task": "text", "model": "gpt"}, context={"task": "text", "model": "gpt"},
             init_optimizer={"init_from": "0123456789abcdef"},
             measures_every={"measures": "norms"},
             muon_lr_ratio={"optimizer": "muon"}, muon_momentum={"optimizer": "muon"},
             muon_nesterov={"optimizer": "muon"}, muon_adjust_lr={"optimizer": "muon"},
             )


def test_version_1_ids_are_those_of_groklab_0_1():
    for run_id, settings in V1_IDS.items():
        assert RunSpec(semantics=1, **settings).run_id == run_id


def test_current_version_is_part_of_the_identity():
    assert RunSpec().identity()["semantics"] == SEMANTICS
    assert "semantics" not in RunSpec(semantics=1).identity()
    assert RunSpec().run_id != RunSpec(semantics=1).run_id


def test_new_fields_at_their_defaults_leave_the_id_alone():
    plain = RunSpec()
    explicit = RunSpec(grad_clip=None, lr_schedule="constant", decay_params="all",
                       grad_filter="none", lr_depth="none")
    assert explicit.run_id == plain.run_id
    for name in ("grad_clip", "lr_schedule", "decay_params", "grad_filter", "lr_depth"):
        assert name not in plain.identity()


@pytest.mark.parametrize("a, b", [
    (dict(task="permutation", p=97), dict(task="permutation", p=59)),
    (dict(task="x_plus_y", k=5), dict(task="x_plus_y", k=3)),
    (dict(d_ff=None), dict(d_ff=512)),
    (dict(optimizer="sgd", beta2=0.98), dict(optimizer="sgd", beta2=0.5)),
    (dict(momentum=0.0), dict(momentum=0.9)),
    (dict(lr_schedule="constant"), dict(min_lr_ratio=0.5)),
    (dict(grad_filter="ema"), dict(grad_filter="ema", filter_lamb=2.0, filter_window=7)),
    (dict(lr_depth="exponential"), dict(lr_depth="exponential", lr_depth_floor=0.5)),
])
def test_ignored_settings_leave_the_id_alone(a, b):
    assert RunSpec(**a).run_id == RunSpec(**b).run_id


def test_settings_that_matter_change_the_id():
    base = RunSpec()
    for name, value in OTHER.items():
        if name == "lr_name":
            assert RunSpec(lr_name="x").run_id == base.run_id  # a label, not a setting
            continue
        needs = NEEDS.get(name, {})
        ref = RunSpec(**needs)
        changed = RunSpec(**(needs | {name: value}))
        assert changed.run_id != ref.run_id, name


def test_cohort_key_is_identity_minus_per_run_fields():
    """Every field either may differ inside a cohort (PER_RUN) or splits cohorts."""
    assert set(OTHER) == set(RunSpec.model_fields)
    for name, value in OTHER.items():
        if name == "lr_name":
            continue
        needs = NEEDS.get(name, {})
        same = RunSpec(**needs).cohort_key() == RunSpec(**(needs | {name: value})).cohort_key()
        assert same == (name in PER_RUN), name


@pytest.mark.parametrize("bad", [
    dict(lr=(math.nan, 1e-3, 1e-3)), dict(lr=(math.inf, 1e-3, 1e-3)), dict(eps=math.inf),
    dict(eps=math.nan), dict(weight_decay=math.nan), dict(train_fraction=math.nan),
    dict(lr=(0.0, 1e-3, 1e-3)), dict(lr={"embedding": 1e-3}), dict(grad_clip=math.inf),
])
def test_non_finite_and_inconsistent_settings_are_rejected(bad):
    with pytest.raises(ValidationError):
        RunSpec(**bad)


def test_settings_a_model_does_not_have_are_ignored():
    assert RunSpec(d_hidden=64).run_id == RunSpec().run_id  # the Transformer has no d_hidden
    assert RunSpec(model="mlp", n_heads=2).run_id == RunSpec(model="mlp").run_id
    assert RunSpec(model="lstm", activation="gelu").run_id == RunSpec(model="lstm").run_id
    one_hot = RunSpec(model="mlp", embedding=False)
    assert RunSpec(model="mlp", embedding=False, d_model=64).run_id == one_hot.run_id
    assert RunSpec(model="mlp", d_model=64).run_id != RunSpec(model="mlp").run_id
    assert RunSpec(model="mlp", d_model=100, n_heads=3).model == "mlp"  # no head check


@pytest.mark.parametrize("settings, field, why", [
    (dict(task="text", model="gpt"), "train_fraction",
     "ignored by task 'text' (its split is fixed)"),
    (dict(model="mlp", embedding=False), "d_model",
     "ignored by model 'mlp' without an embedding table"),
    (dict(optimizer="muon", muon_momentum=0.0), "muon_nesterov", "ignored with muon_momentum 0"),
    (dict(muon_momentum=0.0), "muon_nesterov", "ignored by optimizer 'adamw'"),
    (dict(optimizer="sgd"), "beta1", "ignored by optimizer 'sgd'"),
    (dict(model="mlp", d_ff=512), "d_ff", "ignored by model 'mlp'"),
    (dict(d_ff=512), "d_ff", AS_UNSET),
    (dict(max_len=4), "max_len", AS_UNSET),
    (dict(lr_depth="linear"), "lr_depth_gamma", "ignored by lr_depth 'linear'"),
    (dict(task="permutation"), "p", "ignored by task 'permutation'"),
])
def test_ignored_reasons_follow_the_declared_readers(settings, field, why):
    assert RunSpec(**settings).ignored_reasons().get(field) == why


def test_a_condition_on_a_setting_the_run_ignores_sees_its_default():
    """The Transformer ignores ``embedding``, so ``embedding = false`` takes nothing from its
    ``d_model``; the MLP reads ``embedding``, so its ``d_model`` goes with the table."""
    assert "d_model" not in RunSpec(embedding=False).ignored()
    assert "d_model" in RunSpec(model="mlp", embedding=False).ignored()
