"""The run-setting flags, made from the settings' declarations (``groklab.settings``): a
flag's name, type, default and help are its setting's, so no command restates them.

``option(name)`` is one flag's parameter type; ``setting_flags`` gives a command a flag for
every declared setting that has one, which reaches it as a keyword argument at the setting's
default; ``typed_settings`` keeps those the command line typed.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar, get_args

import typer

from groklab.cli.common import fail
from groklab.cli.names import NAMES
from groklab.cli.settings import given
from groklab.settings import SETTINGS, Setting, shown

C = TypeVar("C", bound=Callable[..., Any])


def option(name: str, *, unset: str | None = None) -> Any:
    """``Annotated[type, typer.Option(...)]``: setting ``name``'s flag. With ``unset`` the
    flag defaults to None (not typed) and its help says what that means (``"the space's"``:
    `groklab tune` takes the search space's value, else the setting's default)."""
    s = SETTINGS[name]
    kind = _python_type(s.type)
    text = help_text(s)
    if unset is not None:
        text = f"{text.removesuffix('.')}; default: {unset}, else {shown(s.default)}."
    if unset is not None or s.default is None:
        return Annotated[kind | None, typer.Option(s.flag, help=text)]
    return Annotated[kind, typer.Option(s.flag, help=text)]


def shared_option(name: str, note: str = "") -> Any:
    """Setting ``name``'s flag for several commands (cli/shape.py): None unless typed, its
    help saying the declared default and ``note`` (what another command takes instead)."""
    s = SETTINGS[name]
    default = s.none if s.default is None else shown(s.default)
    text = f"{s.meaning(NAMES.get(name, ())).removesuffix('.')} (default {default}{note})."
    return Annotated[_python_type(s.type) | None, typer.Option(s.flag, help=text)]


def help_text(s: Setting) -> str:
    """A setting's help as its flag shows it: ``{choices}`` filled in with the values it
    takes, and what None means where None is its default."""
    text = s.meaning(NAMES.get(s.name, ()))
    if s.default is None and s.none is not None:
        text = f"{text.removesuffix('.')}; default: {s.none}."
    return text


def setting_flags(*, shared: Mapping[str, Any] = {}) -> Callable[[C], C]:
    """Decorator: the command also takes a flag for every declared setting that has one and
    is not already its own parameter, each at the setting's default, placed before its
    ``settings`` parameter (``--set``); they reach it as keyword arguments (``**flags``).
    ``shared`` gives some settings' flags as defined for several commands (cli/shape.py),
    defaulting to None."""

    def wrap(command: C) -> C:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        taken = {p.name for p in own}
        flags = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                   annotation=shared.get(name) or option(name),
                                   default=None if name in shared else s.default)
                 for name, s in SETTINGS.items() if s.flag and name not in taken]
        at = next((i for i, p in enumerate(own) if p.name == "settings"), len(own))
        command.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*own[:at], *flags, *own[at:]])
        return command

    return wrap


def _python_type(annotation: Any) -> type:
    """The type a flag parses: bool, int or float, else text (names, Literal choices)."""
    args = set(get_args(annotation)) - {type(None)} or {annotation}
    for kind in (bool, int, float):
        if args == {kind}:
            return kind
    return str


def typed_settings(ctx: typer.Context, flags: Mapping[str, Any], extra: Mapping[str, Any] = {}
                   ) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings the command line typed among ``flags`` (those ``setting_flags`` gave the
    command), a flag whose text sets several settings parsed (``--grad-filter ema:0.98:2``),
    and, by setting, the flag or ``--set`` key that gave it (``given``, with ``extra``: the
    ``--set`` settings). One line, exit 2, for text such a flag does not take or a number
    that is not finite."""
    composite = {}
    for name, value in flags.items():
        parse = SETTINGS[name].parse
        if parse is not None:
            try:
                composite[name] = parse(value)
            except ValueError as e:
                fail(str(e))
    origin = given(ctx, extra, sets=composite)
    typed = {k: v for name, value in flags.items()
             for k, v in composite.get(name, {name: value}).items() if k in origin}
    for name, value in typed.items():
        if isinstance(value, float) and not math.isfinite(value):
            fail(f"{origin[name]} must be a finite number, got {value}")
    return typed, origin
