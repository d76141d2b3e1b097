"""RunSpec: everything that determines one run's result (ARCHITECTURE decision 1).

A spec is validated once on construction; its content hash is the run's id in the store.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from groklab.optim.groups import GROUPS, LR_CONFIGS
from groklab.tasks import build_task, task_names

Precision = Literal["fp32", "bf16"]
OptimizerName = Literal["adamw", "adam", "sgd"]


class RunSpec(BaseModel):
    """One training run. Defaults are the reference settings of SPEC §2–§5."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # task (SPEC §2)
    task: str = "x_plus_y"
    p: int = Field(97, ge=2)
    k: int = Field(5, ge=2)
    train_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    # model (SPEC §3)
    model: Literal["transformer"] = "transformer"
    n_layers: int = Field(2, ge=1)
    d_model: int = Field(128, ge=1)
    n_heads: int = Field(4, ge=1)
    d_ff: int | None = Field(None, ge=1)
    # optimiser and schedule (SPEC §4, §5)
    optimizer: OptimizerName = "adamw"
    lr: tuple[float, float, float] = LR_CONFIGS["baseline"]
    lr_name: str | None = None  # a label for the rates; not part of the run's identity
    group_rules: tuple[tuple[str, str], ...] | None = None  # None: the model's default rule
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.98, ge=0.0, lt=1.0)
    eps: float = Field(1e-8, gt=0.0)
    weight_decay: float = Field(0.5, ge=0.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    nesterov: bool = False
    warmup: int = Field(50, ge=0)
    steps: int = Field(7500, ge=1)
    batch_size: int = Field(512, ge=1)
    eval_every: int = Field(10, ge=1)
    precision: Precision = "fp32"
    seed: int = Field(0, ge=0)

    @field_validator("lr")
    @classmethod
    def _positive_rates(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not r > 0 for r in v):
            raise ValueError("learning rates must be positive")
        return v

    @field_validator("group_rules")
    @classmethod
    def _known_groups(cls, v: tuple[tuple[str, str], ...] | None):  # noqa: ANN206
        for _, group in v or ():
            if group not in GROUPS:
                raise ValueError(f"group {group!r} is not one of {', '.join(GROUPS)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RunSpec:
        if self.task not in task_names():
            raise ValueError(f"unknown task {self.task!r}; known tasks: {', '.join(task_names())}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer 'sgd' with momentum > 0")
        build_task(self.task, p=self.p, k=self.k)  # raises TaskError for impossible settings
        return self

    # -- identity ---------------------------------------------------------------------------
    def identity(self) -> dict:
        """The fields that determine the result (None-valued optional fields left out)."""
        return self.model_dump(mode="json", exclude={"lr_name"}, exclude_none=True)

    @property
    def run_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def cohort_key(self) -> tuple:
        """Runs with equal keys share data shapes and model shape and can train as one cohort.

        Everything else (seed, rates, decay, betas, warm-up, optimiser family) varies per run.
        """
        return (self.task, self.p, self.k, self.train_fraction, self.model, self.n_layers,
                self.d_model, self.n_heads, self.d_ff, self.steps, self.batch_size,
                self.eval_every, self.precision, self.optimizer, self.group_rules)

    @property
    def label(self) -> str:
        return self.lr_name or ",".join(f"{r:g}" for r in self.lr)
