"""The researcher's desk: ``groklab show`` (one run, readably), ``groklab rm`` (remove runs),
``groklab resume`` (continue every unfinished run as the commands that made it would) and
``groklab studies`` (a store's studies with their runs counted by status).

``rm`` deletes a run's rows (runs, curves, metrics, texts, study memberships, recorded
specs) in one store transaction, refusing runs another live process trains, then its files
(weights, optimiser state, and every checkpoint that holds it: its cohort mates restart from
step 0). ``resume`` replays every recorded invocation (cli/invocation.py) that has runs
left, oldest first, through the same runner and with the same checkpoint interval, so a
cohort finds its checkpoint and continues bit for bit; runs no invocation recorded (an older
store, the Python API, ``groklab tune``'s trials) are continued from their stored specs.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from groklab.cli.common import Device, fail, read_store
from groklab.cli.selection import (
    Statuses,
    Studies,
    Where,
    check_names,
    choose,
    parse_filters,
    resolve_ids,
)

Folder = Annotated[Path, typer.Argument(help="An output folder of `groklab run` or `study`.")]
RunIds = Annotated[list[str] | None, typer.Argument(
    metavar="[RUN_ID]...", help="Runs by id or a unique prefix of one.", show_default=False)]


def show(
    path: Folder,
    run_id: Annotated[str, typer.Argument(
        metavar="RUN_ID", help="The run: its id or a unique prefix of one.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
) -> None:
    """Show one run readably: the settings given (against RunSpec's defaults) and the rest,
    status and owner, last step, summary metrics, its files and the command that made it."""
    with read_store(path) as store:
        (rid,) = resolve_ids(store, [run_id])
        row = next(r for r in store.runs() if r["id"] == rid)
        info = _run_info(store, row)
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    typer.echo(_show_text(info))


def _run_info(store: Any, row: dict[str, Any]) -> dict[str, Any]:
    """What ``show`` says about run ``row`` of ``store``, as plain data."""
    from groklab.records import FINAL_METRICS
    from groklab.spec import RunSpec, stored_spec
    from groklab.store.weights import optimizer_path, weights_path

    rid = row["id"]
    spec = stored_spec(row)
    values = spec.model_dump(mode="json")
    defaults = {k: json.loads(json.dumps(f.default)) for k, f in RunSpec.model_fields.items()}
    ignored = spec.ignored_reasons()
    given = {k: {"value": v, "default": defaults[k], "ignored": ignored.get(k)}
             for k, v in values.items() if v != defaults[k]}
    claim = store.claim(rid)
    studies = store.run_studies().get(rid, [])
    commands = [{"command": inv["command"], "argv": inv["argv"], "cwd": inv["cwd"],
                 "created": inv["created"], "number": inv["id"]}
                for inv in _made_by(store, rid, studies)]
    return {
        "id": rid, "task": spec.task, "label": row["label"], "seed": spec.seed,
        "status": row["status"], "owner": claim["owner"], "heartbeat": claim["heartbeat"],
        "held": claim["held"], "last_step": store.last_steps().get(rid), "steps": spec.steps,
        "set": given, "defaults": {k: v for k, v in values.items() if k not in given},
        "summary": {k: row.get(k) for k in (*FINAL_METRICS, "wall_s", "device")},
        "studies": {name: dict(store.study_members(name)).get(rid) for name in studies},
        "weights": str(weights_path(store.root, rid))
        if weights_path(store.root, rid).is_file() else None,
        "optimizer": str(optimizer_path(store.root, rid))
        if optimizer_path(store.root, rid).is_file() else None,
        "checkpoints": [{"path": str(p), "step": step, "runs": len(ids)}
                        for p, ids, step in checkpoints(store.root) if rid in ids],
        "commands": commands,
    }


def _made_by(store: Any, rid: str, studies: Sequence[str]) -> list[dict[str, Any]]:
    """The recorded invocations that expanded run ``rid`` (or, for a tune search's run,
    that ran its study)."""
    return [inv for inv in store.invocations()
            if rid in inv["run_ids"] or (not inv["run_ids"]
                                         and inv["options"].get("study") in studies)]


def _show_text(info: dict[str, Any]) -> str:
    """``show``'s text: one labelled line (or block) per part."""
    from groklab.cli.invocation import quoted
    from groklab.format import MISSING, setting
    from groklab.report.listing import cell

    def when(t: float | None) -> str:
        return MISSING if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

    lines = [f"run {info['id']}: {info['task']}, {info['label']}, seed {info['seed']}"]
    lines.append(f"status       {info['status']}")
    owner, beat = info["owner"], info["heartbeat"]
    ago = "" if beat is None else f" (heartbeat {time.time() - beat:.0f} s ago)"
    if owner is None:
        lines.append("owner        none: no process holds it")
    elif info["status"] == "finished":
        lines.append(f"owner        {owner}: the process that finished it")
    elif info["held"]:
        lines.append(f"owner        {owner}: a live process trains it{ago}")
    else:
        lines.append(f"owner        {owner} is gone{ago}: free to resume")
    last = MISSING if info["last_step"] is None else str(info["last_step"])
    lines.append(f"last step    {last} of {info['steps']} (the last evaluation recorded)")
    width = max((len(k) for k in info["set"]), default=0)
    lines.append(f"settings     {len(info['set'])} given (not RunSpec's default):")
    for k, v in info["set"].items():
        note = f"default {setting(v['default'])}"
        if v["ignored"]:
            note += f"; {v['ignored']}"
        lines.append(f"  {k:<{width}}  {setting(v['value'])}  ({note})")
    rest = ", ".join(f"{k}={setting(v)}" for k, v in info["defaults"].items())
    lines.append(f"defaults     {len(info['defaults'])} at RunSpec's default:")
    lines += textwrap.wrap(rest, 88, initial_indent="  ", subsequent_indent="  ")
    summary = ", ".join(f"{k} {cell(k, v)}" for k, v in info["summary"].items())
    lines.append("summary")
    lines += textwrap.wrap(summary, 88, initial_indent="  ", subsequent_indent="  ")
    studies = ", ".join(f"{name} (as {label})" for name, label in info["studies"].items())
    lines.append(f"studies      {studies or 'none'}")
    lines.append(f"weights      {info['weights'] or 'none (only a finished run has them)'}")
    if info["optimizer"]:
        lines.append(f"optimizer    {info['optimizer']}")
    for c in info["checkpoints"] or [None]:
        lines.append("checkpoint   " + ("none" if c is None else
                                        f"{c['path']} (step {c['step']}, {c['runs']} run(s))"))
    for c in info["commands"] or [None]:
        lines.append("command      " + (
            "none recorded (an older groklab, or the Python API)" if c is None else
            f"{quoted(c['argv'])}  (in {c['cwd']}, {when(c['created'])})"))
    return "\n".join(lines)


def checkpoints(root: Path) -> list[tuple[Path, list[str], int | None]]:
    """Every readable checkpoint next to the store in ``root``: its file, the ids of its
    cohort's runs and the step it holds (unreadable files are skipped)."""
    from groklab.engine.checkpoint import CHECKPOINT_DIR, read_checkpoint

    out = []
    for path in sorted((Path(root) / CHECKPOINT_DIR).glob("*.ckpt")):
        try:
            saved = read_checkpoint(path)
            ids = [str(r) for r in saved["run_ids"]]
        except (ValueError, OSError, RuntimeError, KeyError, EOFError):
            continue
        step = saved.get("clock", saved.get("state", {}).get("t"))
        out.append((path, ids, None if step is None else int(step)))
    return out


def rm(
    path: Annotated[Path, typer.Argument(help="An output folder of `groklab run` or `study`.")],
    run_ids: RunIds = None,
    study: Studies = None,
    status: Statuses = None,
    where: Where = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Say what would be removed; remove nothing.")] = False,
) -> None:
    """Remove runs from PATH: their curves, metrics, texts, study memberships, weights and
    checkpoints (chosen by id, --study, --status, --where: all that apply). A run another
    live process trains is refused, and then nothing is removed."""
    from groklab.engine.checkpoint import remove_if_empty
    from groklab.store.weights import remove_weights, weight_files

    filters = parse_filters(study, status, where)
    if not run_ids and filters.empty:
        fail("say which runs to remove: run ids, --study, --status or --where (nothing "
             "removed)")
    with read_store(path) as store:
        if store.read_only and not dry_run:
            fail(f"cannot remove runs from {path}: it is read-only (nothing removed)")
        check_names(filters, [store])
        ids = resolve_ids(store, run_ids or [])
        memberships = store.run_studies()
        rows = [r for r in choose(store.runs(), filters, memberships)
                if not run_ids or r["id"] in ids]
        chosen = [r["id"] for r in rows]
        if filters.studies and not (run_ids or filters.statuses or filters.where):
            # the study's members not started yet go too, so resume does not train them
            chosen += [rid for name in filters.studies for rid, _ in store.study_members(name)
                       if rid not in chosen]
        if not chosen:
            typer.echo("no runs match; nothing removed", err=True)
            return
        done = store.remove_runs(chosen, dry_run=dry_run)
        if done["held"]:
            held = ", ".join(f"{rid} (owner {o})" for rid, o in done["held"].items())
            fail(f"cannot remove {len(done['held'])} run(s) another live process trains: "
                 f"{held}; stop it or wait (nothing removed)")
        kept_children = [r["id"] for r in store.runs()
                         if r.get("init_from") in chosen and r["id"] not in chosen]
        files = [p for rid in chosen for p in weight_files(store.root, rid)]
        ckpts = [p for p, cohort, _ in checkpoints(store.root) if set(cohort) & set(chosen)]
        if not dry_run:
            for rid in chosen:
                remove_weights(store.root, rid)
            for p in ckpts:
                p.unlink(missing_ok=True)
            if ckpts:
                remove_if_empty(ckpts[0].parent)
    typer.echo(_removal_text(rows, chosen, done, files, ckpts, kept_children, dry_run))


def _removal_text(rows: Sequence[dict[str, Any]], chosen: Sequence[str],
                  done: dict[str, Any], files: Sequence[Path], ckpts: Sequence[Path],
                  kept_children: Sequence[str], dry_run: bool) -> str:
    """What ``rm`` removed (or, with ``dry_run``, would remove), in a few lines."""
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    never = len(chosen) - len(rows)
    if never:
        by_status["never started"] = never
    counts = ", ".join(f"{n} {s}" for s, n in by_status.items())
    rows_n = done["rows"]
    verb = "would remove" if dry_run else "removed"
    lines = [f"{verb} {len(chosen)} run(s) ({counts}): {', '.join(chosen)}",
             f"  rows: {rows_n['runs']} run, {rows_n['curves']} curve, {rows_n['metrics']} "
             f"metric, {rows_n['texts']} text, {rows_n['study_runs']} study membership, "
             f"{rows_n['invocation_specs']} recorded spec",
             f"  files: {len(files)} weights/optimiser file(s), {len(ckpts)} checkpoint "
             "file(s)" + (" (their cohort mates restart from step 0)" if ckpts else "")]
    if done["studies"]:
        lines.append(f"  studies left with no runs ({verb} too): {', '.join(done['studies'])}")
    if kept_children:
        lines.append(f"  note: {len(kept_children)} run(s) kept start from a removed run "
                     f"(init_from) and cannot train again: {', '.join(kept_children)}")
    if dry_run:
        lines.append("nothing removed (--dry-run)")
    return "\n".join(lines)


def resume(
    path: Annotated[Path, typer.Argument(help="An output folder of `groklab run`, `study`, "
                                        "`lm` or `tune`.")],
    device: Device = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Continue every unfinished run of PATH as the commands that made them would (their
    command lines are recorded in the store), from their checkpoints, in this process."""
    from groklab.cli.common import check_device
    from groklab.cli.invocation import quoted
    from groklab.engine import run_specs
    from groklab.engine.checkpoint import EVERY_SECONDS, EVERY_STEPS
    from groklab.format import run_counts
    from groklab.report.listing import results_table
    from groklab.spec import stored_spec

    with read_store(path) as store:
        if store.read_only:
            fail(f"cannot resume runs in {path}: it is read-only")
        dev = check_device(device)
        status = {r["id"]: r["status"] for r in store.runs()}
        plan = _replays(store.invocations(), status)
        covered = {rid for inv in store.invocations() for rid in inv["run_ids"]}
        loose = [r for r in store.runs() if r["status"] != "finished" and r["id"] not in covered]
        if not plan and not loose:
            typer.echo(f"nothing to resume: every run of {path} is finished ({len(status)} "
                       "run(s))", err=True)
            return
        total: dict[str, int] = {}
        touched: list[str] = []
        for inv in plan:
            specs = store.invocation_specs(inv["id"])
            left = sum(status.get(s.run_id) != "finished" for s in specs)
            typer.echo(f"groklab: resuming {quoted(inv['argv'])} ({left} of {len(specs)} "
                       "run(s) unfinished)", err=True)
            every = inv["options"].get("checkpoint_every", EVERY_STEPS)
            t0 = time.perf_counter()
            counts = run_specs(specs, store.root, device=dev, progress=progress,
                               overall=inv["command"] == "study",
                               compile=inv["options"].get("compile"), store=store,
                               slots=inv["options"].get("slots"),
                               checkpoint_every=every or None,
                               checkpoint_seconds=EVERY_SECONDS if every else None)
            if inv["command"] == "study" and inv["options"].get("study"):
                store.add_study_time(inv["options"]["study"], time.perf_counter() - t0)
            _add(total, counts)
            touched += [s.run_id for s in specs]
        if loose:
            typer.echo(f"groklab: resuming {len(loose)} run(s) no recorded command made (an "
                       "older groklab, the Python API or a tune search) from their stored "
                       "settings", err=True)
            for group in _by_checkpoint(store.root, [r["id"] for r in loose]):
                specs = [stored_spec(next(r for r in loose if r["id"] == rid))
                         for rid in group]
                _add(total, run_specs(specs, store.root, device=dev, progress=progress,
                                      store=store))
                touched += group
        shown = set(touched)
        rows = [r for r in store.runs() if r["id"] in shown]
    typer.echo(results_table(rows))
    typer.echo(f"{run_counts(total)}; store: {path}/groklab.sqlite", err=True)


def _replays(invocations: Sequence[dict[str, Any]],
             status: dict[str, str]) -> list[dict[str, Any]]:
    """The invocations ``resume`` replays, oldest first: those with a run not finished (or
    never started); of several with the same runs, the latest only."""
    latest: dict[tuple[str, ...], dict[str, Any]] = {}
    for inv in invocations:
        if any(status.get(rid) != "finished" for rid in inv["run_ids"]):
            latest.pop(tuple(inv["run_ids"]), None)
            latest[tuple(inv["run_ids"])] = inv
    return sorted(latest.values(), key=lambda inv: inv["id"])


def _by_checkpoint(root: Path, run_ids: Sequence[str]) -> list[list[str]]:
    """``run_ids`` in groups to train apart: each checkpoint's cohort whose runs are all
    among them, in its order (so it resumes from it), then the rest together."""
    left = list(run_ids)
    groups = []
    for _, cohort, _ in checkpoints(root):
        if cohort and set(cohort) <= set(left):
            groups.append(cohort)
            left = [rid for rid in left if rid not in cohort]
    return [*groups, left] if left else groups


def _add(total: dict[str, int], counts: dict[str, int]) -> None:
    for k, v in counts.items():
        total[k] = total.get(k, 0) + v


def studies(
    path: Folder,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of studies.")
                       ] = False,
) -> None:
    """List the studies recorded in PATH, each with its runs counted by status."""
    from groklab.cli.selection import STATUSES
    from groklab.format import MISSING

    with read_store(path) as store:
        found = store.study_counts()
        members = store.run_studies()
        alone = sum(1 for r in store.runs() if r["id"] not in members)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    if not found:
        typer.echo(f"no studies ({alone} run(s) of no study)")
        return
    seen = {s for f in found for s in f["status"]}
    columns = [*STATUSES, *sorted(seen - {*STATUSES, "not started"}), "not started"]
    header = ["study", "runs", *columns, "wall_s"]
    table = [[f["name"], str(f["runs"]), *(str(f["status"].get(c, 0)) for c in columns),
              MISSING if f["wall_s"] is None else f"{f['wall_s']:.0f}"] for f in found]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    for row in [header, *table]:
        typer.echo("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    if alone:
        typer.echo(f"({alone} run(s) of no study)")
