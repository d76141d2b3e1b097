"""What a run's label says: the one rule every command and study labels runs by.

A label is the name the runs were asked for (a named rate configuration such as
``baseline``, a recipe such as ``acceleration-fast``, or a study's variant) followed by
``key=value`` for every setting the run has beyond what that name defines, in the form a
study's grid axes already take (``layerwise weight_decay=0.1``):

- a rate configuration defines the rates and the reference training of docs/protocol.md §4
  (AdamW, softmax cross-entropy, no ⊥Grad, no gradient filter, fixed embedding rate, uniform
  batches, a constant rate without depth decay): a Muon + StableMax + ⊥Grad run at the
  baseline rates is ``baseline optimizer=muon loss=stablemax grad_ortho=True``, never plain
  ``baseline`` beside AdamW baselines;
- a recipe defines its settings: ``--recipe acceleration-fast --optimizer adamw`` is
  ``acceleration-fast optimizer=adamw``, and ``--lr baseline`` beside it is
  ``acceleration-fast lr=baseline``.

Settings a run ignores are never named. Labels are not part of a run's identity
(docs/design.md, decision 1): relabelling changes no run id.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from groklab.format import setting
from groklab.spec import RunSpec

# the training methods a rate configuration's name leaves at the reference (protocol §4)
METHODS = ("optimizer", "loss", "grad_ortho", "grad_filter", "embedding_lr", "sampling",
           "lr_schedule", "lr_depth")


def run_label(name: str, spec: RunSpec, defined: Mapping[str, Any] | None = None,
              lr_text: str | None = None) -> str:
    """``name`` followed by `` key=value`` for each setting of ``spec`` that differs from
    what ``name`` defines: ``defined`` (a recipe's settings; None: a rate configuration,
    which defines ``lr`` as ``spec`` has it) and, beyond it, the reference value (the
    default) of every training method in ``METHODS``. ``lr_text`` names ``spec``'s rates
    when they differ (a configuration name; default: the rates)."""
    values = {k: getattr(spec, k) for k in RunSpec.model_fields}
    parts = beyond(values, {"lr": spec.lr} if defined is None else defined, lr_text,
                   spec.ignored())
    return " ".join([name, *parts])


def beyond(values: Mapping[str, Any], defined: Mapping[str, Any],
           lr_text: str | None = None, ignored: Collection[str] = ()) -> list[str]:
    """``key=value`` for each setting in ``values`` (settings absent: at their default)
    that differs from ``defined``, or, for a training method ``defined`` leaves out, from
    its reference value; ``ignored`` settings are left out."""
    out = []
    for key in dict.fromkeys([*defined, *METHODS]):
        if key in ignored or key not in RunSpec.model_fields or key not in values:
            continue
        want = defined.get(key, RunSpec.model_fields[key].default)
        have = values[key]
        if not _same(have, want):
            text = lr_text if key == "lr" and lr_text else setting(have, compact=True)
            out.append(f"{key}={text}")
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as settings: lists and tuples alike, numbers by value."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def label_runs(specs: Sequence[RunSpec], recipe: str | None = None,
               bundle: Mapping[str, Any] | None = None) -> list[RunSpec]:
    """Each run labelled by the one rule (``run_label``): the recipe's name, else its rate
    configuration's, then every setting beyond what that name defines (``baseline
    optimizer=muon``, ``acceleration-fast optimizer=adamw``). Ids unchanged."""
    out = []
    for s in specs:
        label = (run_label(recipe, s, bundle, lr_text=s.lr_name) if recipe is not None
                 else run_label(s.label, s))
        out.append(s if label == s.label else s.model_copy(update={"lr_name": label}))
    return out

