"""A search space: fixed run settings plus the dimensions a search samples (no Optuna here).

The default space is the paper's three layer-wise rates, each log-uniform in [1e-4, 1e-2]:
``lr_e`` (embedding), ``lr_l`` (lower block), ``lr_h`` (higher block). A TOML file may
change their ranges, fix any run setting, and add any run setting as a dimension::

    [settings]              # fixed for every trial: any run setting (README, Settings)
    weight_decay = 1.0

    [params.lr_e]           # a rate's range (lr_e, lr_l, lr_h)
    low = 3e-4
    high = 3e-2             # log = true is the default for rates

    [params.weight_decay]   # any run setting joins the search
    low = 0.05
    high = 2.0
    log = true

    [params.warmup]         # integer bounds: an integer dimension (step = 1 unless given)
    low = 0
    high = 200

    [params.lr_schedule]    # a list of choices: a categorical dimension
    choices = ["constant", "cosine"]

Fixing ``lr`` in ``[settings]`` removes the rate dimensions. Every dimension is checked before
anything runs (each bound and choice must make a valid run); errors name the file, the key
and the reason, as study files do.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from groklab.spec import RunSpec

RATE_DIMS = ("lr_e", "lr_l", "lr_h")
RATE_RANGE = (1e-4, 1e-2)
PARAM_KEYS = ("low", "high", "log", "step", "choices")
RESERVED = {"seed": "trials choose seeds with --seeds", "lr_name": "a trial's label is its "
            "number", "lr": "search the rates as lr_e, lr_l and lr_h (or fix lr in [settings])"}


class SpaceError(ValueError):
    """A search space that cannot run: ``source: key: reason``."""

    def __init__(self, source: str, key: str, reason: str):
        super().__init__(f"{source}: {key}: {reason}")


@dataclass(frozen=True)
class Dim:
    """One dimension: a float or int range (``log``: sampled log-uniformly) or choices."""

    name: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] | None = None

    @property
    def kind(self) -> str:
        if self.choices is not None:
            return "categorical"
        return "int" if isinstance(self.low, int) and isinstance(self.high, int) else "float"

    def values(self) -> list[Any]:
        """Values that must all make valid runs: the bounds, or every choice."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def describe(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step}


@dataclass(frozen=True)
class Space:
    """Fixed ``settings`` plus ``dims``; ``spec`` turns sampled values into a run."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    dims: tuple[Dim, ...] = ()
    source: str = "<default space>"

    def spec(self, values: Mapping[str, Any], *, seed: int, label: str) -> RunSpec:
        """The run for sampled ``values`` (dimension name -> value)."""
        fields = dict(self.settings) | {k: v for k, v in values.items() if k not in RATE_DIMS}
        if all(r in values for r in RATE_DIMS):
            fields["lr"] = tuple(float(values[r]) for r in RATE_DIMS)
        return RunSpec(**fields, seed=seed, lr_name=label)

    def definition(self) -> dict[str, Any]:
        """JSON-able description (recorded with the search)."""
        return {"source": self.source, "settings": dict(self.settings),
                "params": {d.name: d.describe() for d in self.dims}}


def default_dims() -> tuple[Dim, ...]:
    return tuple(Dim(name, *RATE_RANGE, log=True) for name in RATE_DIMS)


def build_space(data: Mapping[str, Any] | None = None, source: str = "<default space>",
                overrides: Mapping[str, Any] | None = None) -> Space:
    """A checked space from a parsed TOML table (None: the default space); ``overrides``
    (command-line settings) replace fixed settings and remove dimensions of the same name."""
    data = dict(data or {})
    overrides = dict(overrides or {})
    for key in data:
        if key not in ("settings", "params"):
            raise SpaceError(source, key, "unknown key; expected settings or params")
    settings, params = data.get("settings", {}), data.get("params", {})
    for key, table in (("settings", settings), ("params", params)):
        if not isinstance(table, Mapping):
            raise SpaceError(source, key, f"expected a table, got {type(table).__name__}")
    settings = dict(settings) | overrides
    for key in settings:
        _check_name(source, f"settings.{key}", key, rate_ok=False, lr_ok=True)
    dims = {d.name: d for d in (() if "lr" in settings else default_dims())}
    for name, table in params.items():
        where = f"params.{name}"
        _check_name(source, where, name, rate_ok="lr" not in settings, lr_ok=False)
        dims[name] = _dim(source, where, name, table)
    for name in overrides:
        dims.pop(name, None)
    space = Space(settings=settings, dims=tuple(dims.values()), source=source)
    _check_values(space)
    return space


def load_space(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> Space:
    """The space of a TOML file (None: the default space) with command-line ``overrides``."""
    if path is None:
        return build_space(None, overrides=overrides)
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise SpaceError(str(path), "file", f"cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise SpaceError(str(path), "TOML", str(e)) from None
    return build_space(data, str(path), overrides)


def _check_name(source: str, where: str, name: str, *, rate_ok: bool, lr_ok: bool) -> None:
    if name in RATE_DIMS:
        if not rate_ok:
            raise SpaceError(source, where, "a rate dimension; lr is fixed in [settings]"
                             if lr_ok is False else "set rates as lr = [e, l, h]")
        return
    if name == "lr" and lr_ok:
        return
    if name in RESERVED:
        raise SpaceError(source, where, RESERVED[name])
    if name not in RunSpec.model_fields:
        known = ", ".join(k for k in RunSpec.model_fields if k not in RESERVED)
        raise SpaceError(source, where, f"unknown run setting; known: {', '.join(RATE_DIMS)}, "
                         f"{known}")


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _dim(source: str, where: str, name: str, table: Any) -> Dim:
    if not isinstance(table, Mapping):
        raise SpaceError(source, where, "expected a table with low/high or choices")
    for key in table:
        if key not in PARAM_KEYS:
            raise SpaceError(source, f"{where}.{key}", f"unknown key; expected one of "
                             f"{', '.join(PARAM_KEYS)}")
    if "choices" in table:
        choices = table["choices"]
        if set(table) != {"choices"}:
            raise SpaceError(source, where, "give either choices or low/high, not both")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(source, f"{where}.choices", f"expected a non-empty list, got "
                             f"{choices!r}")
        return Dim(name, choices=tuple(choices))
    low, high = table.get("low"), table.get("high")
    if not (_number(low) and _number(high)):
        raise SpaceError(source, where, f"needs numbers low and high, got {low!r} and {high!r}")
    if not low < high:
        raise SpaceError(source, where, f"low {low} must be below high {high}")
    log = table.get("log", name in RATE_DIMS)
    if not isinstance(log, bool):
        raise SpaceError(source, f"{where}.log", f"expected true or false, got {log!r}")
    if log and low <= 0:
        raise SpaceError(source, where, f"a log range needs low > 0, got {low}")
    step = table.get("step")
    if step is not None and (not _number(step) or step <= 0 or log):
        raise SpaceError(source, f"{where}.step", "a positive number, and not with log = true")
    if isinstance(low, int) and isinstance(high, int) and step is not None \
            and not isinstance(step, int):
        raise SpaceError(source, f"{where}.step", "an integer range needs an integer step")
    return Dim(name, low, high, log, step)


def _check_values(space: Space) -> None:
    """Every bound or choice of every dimension makes a valid run with the fixed settings
    (the other rates at 1e-3, other dimensions at their defaults)."""
    base = {d.name: 1e-3 for d in space.dims if d.name in RATE_DIMS}
    trials = [(d.name, v) for d in space.dims for v in d.values()] or [(None, None)]
    for name, v in trials:
        try:
            space.spec(base | ({} if name is None else {name: v}), seed=0, label="check")
        except ValidationError as e:
            err = e.errors()[0]
            reason = err["msg"].removeprefix("Value error, ")
            loc = str(err["loc"][0]) if err["loc"] else None
            if name is not None and loc in (name, "lr"):
                raise SpaceError(space.source, f"params.{name}", f"{reason} (value {v!r})") \
                    from None
            raise SpaceError(space.source, f"settings.{loc}" if loc else "settings",
                             reason + ("" if name is None else f" (with {name} = {v!r})")) \
                from None
