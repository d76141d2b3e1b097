"""The ``groklab`` command. Bad input: one line on stderr, exit code 2, nothing written.

One module per command family (runs, studies, bench, export, tune, lm), each registered here
by one line; they share cli/common.py. Nothing imports this package.
"""

from __future__ import annotations

import sys

import typer

from groklab.cli import bench, export, lm, runs, studies, tune
from groklab.cli.common import InputError, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="groklab: grokking experiments with layer-wise learning rates.")

app.command()(runs.run)
app.command()(runs.results)
app.command("list")(studies.list_)
app.command()(studies.study)
app.command()(studies.report)
app.command()(bench.bench)
app.add_typer(export.export_app, name="export")
app.command("tune")(tune.tune)
app.command("lm")(lm.lm)
app.command("sample")(lm.sample)


def main(argv: list[str] | None = None) -> int:
    """Entry point: typer without its multi-line error boxes."""
    try:
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
    return rv if isinstance(rv, int) else 0


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())

