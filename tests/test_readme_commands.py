"""Every `groklab ...` command quoted in README.md and docs/*.md runs as written: each one
(code blocks and inline quotes, figure captions included) parses against the real command
line (a dry parse: click's ``make_context``, which checks required options and arguments
without running anything), and the short ones (``list``, ``results``, ``report``,
``export``) run for real on small stores made at the paths they name. An inline quote of a
command's bare name (`groklab report`) names that command, which must exist. The docs'
facts that the code defines are checked too: the presets docs/protocol.md §6 lists, the
commands that take ``--executor``."""

import re
import shlex
from pathlib import Path

import pytest
import typer
from conftest import groklab
from fake_runs import curve, spec, write

from groklab.cli import app
from groklab.cli.common import UsageError

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GROUP = typer.main.get_command(app)
SHORT = ("list", "results", "report", "export")  # commands that answer in seconds


def fenced(text: str) -> tuple[list[tuple[str, str]], str]:
    """The fenced code blocks of Markdown ``text`` as (language, body), and its prose."""
    blocks, prose, lang, body = [], [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, body = line[3:].strip(), []
            else:
                blocks.append((lang, "\n".join(body)))
                lang = None
        elif lang is None:
            prose.append(line)
        else:
            body.append(line)
    return blocks, "\n".join(prose)


def quoted(text: str) -> list[str]:
    """Every `groklab` command of ``text``: lines of shell code blocks (continuations
    joined, ``&&`` chains split, comments dropped) and inline quotes in the prose."""
    blocks, prose = fenced(text)
    out = []
    for lang, body in blocks:
        if lang in ("", "bash", "sh", "console"):
            for line in re.sub(r"\\\n\s*", " ", body).splitlines():
                for part in line.split("&&"):
                    part = part.split(" #")[0].strip()
                    if part.startswith("groklab "):
                        out.append(part)
    out += [" ".join(s.split()) for s in re.findall(r"`(groklab [^`]+)`", prose)]
    return out


COMMANDS = sorted({(path.name, c) for path in DOCS for c in quoted(path.read_text())})


def dry_parse(args: list[str]) -> object:
    """Parse ``args`` as the `groklab` command would, running nothing; the command reached."""
    command, name, parent = GROUP, "groklab", None
    while True:
        ctx = command.make_context(name, list(args), parent=parent)
        if not hasattr(command, "resolve_command"):
            return command
        name, command, args = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        parent = ctx


def test_the_docs_quote_commands():
    assert len(COMMANDS) > 40 and ("README.md", "groklab list") in COMMANDS


@pytest.mark.parametrize("where, command", COMMANDS, ids=[c for _, c in COMMANDS])
def test_every_quoted_command_parses(where, command):
    args = shlex.split(command)[1:]
    if len(args) == 1 and not args[0].startswith("-"):  # a command named, not run
        assert args[0] in GROUP.list_commands(None), f"{where}: no command {args[0]!r}"
        return
    try:
        dry_parse(args)
    except UsageError as e:
        pytest.fail(f"{where}: `{command}` does not parse: {e.format_message()}")


def test_the_short_commands_run_as_written(tmp_path):
    ran: list[str] = []
    for _, command in COMMANDS:
        args = shlex.split(command)[1:]
        if " ".join(args[:2]) in ran or (args[0] != "export" and args[0] in ran):
            continue  # one of each is enough: the parse test covers the others
        if args[0] not in SHORT or (len(args) == 1 and args[0] != "list") or any(
                a.isupper() or "<" in a for a in args):
            continue  # a command named, or a placeholder (DIR, OUT, <run-id>): not to run
        store = next((a for a in args[1:] if not a.startswith("-")
                      and a not in ("tensorboard", "csv", "parquet", "mlflow")), None)
        if store is not None and not (tmp_path / store / "groklab.sqlite").exists():
            write(tmp_path / store, [(spec(seed=s), curve([0.5, 0.995])) for s in (0, 1)])
        if args[:2] == ["export", "tensorboard"]:
            pytest.importorskip("tensorboard")
        groklab(*args, cwd=tmp_path)
        ran += [args[0], " ".join(args[:2])]
    assert {"list", "results", "report", "export"} <= set(ran)


def test_protocol_lists_every_built_in_preset():
    from groklab.studies import preset_names

    text = (ROOT / "docs" / "protocol.md").read_text()
    listed = set(re.findall(r"^\| \d+[a-z]? \| `([\w-]+)` \|", text, re.M))
    listed |= set(re.findall(r"built-in preset `([\w-]+)`", text))
    assert listed == set(preset_names())


def test_the_docs_name_the_commands_that_take_executor():
    takes = sorted(name for name in GROUP.list_commands(None)
                   if any(p.name == "executor" for p in GROUP.get_command(None, name).params))
    sentence = re.search(r"^(.*) accept `--executor ray`", (ROOT / "README.md").read_text(),
                         re.M)
    assert sentence is not None
    assert sorted(re.findall(r"`(\w+)`", sentence.group(1))) == takes


def test_protocol_names_the_metrics_reports_show_in_order():
    from groklab.report.tables import METRICS

    text = (ROOT / "docs" / "protocol.md").read_text()
    bullet = re.search(r"one table per metric of §4, in this order: (.*?)\.", text, re.S)
    assert bullet is not None
    assert re.findall(r"`(\w+)`", bullet.group(1)) == list(METRICS)
