"""The ``groklab`` command. Bad input: one line on stderr, exit code 2, nothing written.

One module per command family (runs, studies, bench, export, tune, lm, desk, plot), each
registered here by one line; they share cli/common.py. Nothing imports this package.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from typer.models import DefaultPlaceholder

from groklab.cli import analyze, bench, desk, export, invocation, lm, plot, runs, studies, tune
from groklab.cli.common import HELP_SETTINGS, InputError, UsageError

# Help is plain text as written (no rich markup: `ma:100:5` is not an emoji code and
# `[[step, value]]` is not markup), wrapped, never cut; -h is --help on every command.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, context_settings=HELP_SETTINGS,
                  help="groklab: grokking experiments with layer-wise learning rates.")


def _version(value: bool) -> None:
    from importlib.metadata import PackageNotFoundError, version

    if value:
        try:
            typer.echo(f"groklab {version('groklab')}")
        except PackageNotFoundError:  # a source tree that is not installed
            typer.echo("groklab (not installed)")
        raise typer.Exit(0)


@app.callback()
def _options(_: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_version,
        help="Print groklab's version and exit.")] = False) -> None:
    """groklab: grokking experiments with layer-wise learning rates."""


app.command()(runs.run)
app.command()(runs.results)
app.command()(analyze.analyze)
app.command("list")(studies.list_)
app.command()(studies.study)
app.command()(studies.report)
app.command()(bench.bench)
app.add_typer(export.export_app, name="export")
app.command("tune")(tune.tune)
app.command("lm")(lm.lm)
app.command("sample")(lm.sample)
app.command()(desk.show)
app.command()(desk.rm)
app.command()(desk.resume)
app.command()(desk.studies)
app.command()(plot.plot)


def _first_sentences(app: typer.Typer) -> None:
    """Every command's line in its group's list is its help's first sentence, whole (click
    would cut it with "..." to fit a line; a short help is wrapped instead)."""
    def first(text: str | None) -> str | None:
        return " ".join(re.split(r"(?<=\.)\s", text.strip(), maxsplit=1)[0].split()) \
            if text else None

    for info in app.registered_commands:
        if info.short_help is None:
            info.short_help = first(info.help or (info.callback and info.callback.__doc__))
    def given(x: Any) -> Any:
        return None if isinstance(x, DefaultPlaceholder) else x

    for group in app.registered_groups:
        sub = group.typer_instance
        if sub is not None:
            if given(group.short_help) is None and given(sub.info.short_help) is None:
                sub.info.short_help = first(given(group.help) or given(sub.info.help))
            _first_sentences(sub)


_first_sentences(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: typer without its multi-line error boxes."""
    import sqlite3

    invocation.remember(argv)  # what run, study, tune and lm record (cli/invocation.py)
    try:
        with _stop_signals():
            rv = app(args=argv, prog_name="groklab", standalone_mode=False)
    except InputError as e:
        print(f"groklab: error: {e}", file=sys.stderr)
        return 2
    except UsageError as e:
        print(f"groklab: error: {e.format_message()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 2
    except (typer.Abort, typer.Exit) as e:
        return getattr(e, "exit_code", 1)
    except KeyboardInterrupt:
        print("groklab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:
        # the store's own error (a file that is not a store, a newer store) and run_specs'
        # preflight (engine/preflight.py): their modules are loaded only by commands that
        # use them, and importing them here would load torch
        store_error = getattr(sys.modules.get("groklab.store.migrations"), "StoreError", ())
        refused = getattr(sys.modules.get("groklab.engine.preflight"), "PreflightError", ())
        if isinstance(e, store_error) or isinstance(e, refused):  # run_specs' own checks
            print(f"groklab: error: {e}", file=sys.stderr)
            return 2
        if isinstance(e, OSError | sqlite3.Error):  # a fault: a full disk, a lost file
            print(f"groklab: error: {_fault(e)}; nothing half-written was kept, and runs in "
                  "progress are 'interrupted': run the same command again to resume once "
                  "that is fixed", file=sys.stderr)
            return 1
        raise
    return rv if isinstance(rv, int) else 0


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP act as Ctrl-C does (``KeyboardInterrupt``: runs in progress are
    checkpointed and released as 'interrupted'; engine/checkpoint.py defers them to the end
    of a training step the same way). Only in the main thread, where signals arrive."""
    import signal
    import threading

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.signal(n, stop) for n in names}
    try:
        yield
    finally:
        for n, handler in previous.items():
            signal.signal(n, handler)


def _fault(e: BaseException) -> str:
    """A failed write or read as one line: what failed, on which file."""
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else ""
        return f"a write or read failed: {e.strerror or e}{where}"
    return f"the store could not be written or read ({' '.join(str(e).split())})"


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())

