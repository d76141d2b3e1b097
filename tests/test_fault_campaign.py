"""A fault campaign (issue 27, item 8). A tiny study (6 runs in 2 slots; the runs' own early
stop ends them at different steps, so queued runs join while others train; a checkpoint every
4 steps) is killed with SIGKILL at many points, runs out of disk at each write site, runs in 6
processes at once, and is pointed at files that are not stores. After every fault and every
resume (the same command again) one checker verifies the store: no run id twice, no run
'running' without a live process, every finished run with its whole curve (to its budget or
to its own early stop), final metrics and weights, and, for a resumed store, curves, final
metrics and weights bit for bit those of one uninterrupted run of the same command.

Every command is the real command line, ``groklab.cli.main``, in a process of its own:
forked from a small server that imported groklab and torch once (starting Python and torch
takes ~4 s on 2 shared cores, a fork ~0.05 s; the uninterrupted reference is a plain
``python -m groklab.cli`` process). A fault is installed in the forked child only, at a named
point of the code, and fires at its N-th occurrence, so every kill point is deterministic.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import GROKLAB, groklab

pytestmark = pytest.mark.slow

ARGS = ["run", "--task", "x_plus_y", "--p", "11", "--d-model", "16", "--n-heads", "2",
        "--batch-size", "16", "--eval-every", "4", "--steps", "40", "--warmup", "6",
        "--lr", "baseline", "--lr", "layerwise", "--seeds", "3",
        "--set", "stop_val_acc=0.06", "--set", "stop_patience=3",
        "--slots", "2", "--checkpoint-every", "4", "--no-progress"]
# Uninterrupted, the 6 runs end at own steps 12 (baseline seed 1, early stop), 32 (layerwise
# seed 0, early stop) and 40 (the others): baseline 0 and 1 start; baseline 2 joins at
# update 12, layerwise 0 at 40, layerwise 1 at 52, layerwise 2 at 72; the last ends at 112.
N_RUNS = 6
MEMORY = 4_000_000_000  # address-space cap of every process this test starts

# SIGKILL points, each "SITE:N" (the N-th time the site is reached in that process); a chain
# of several: the first kills the command, the next kills its resume, and so on. Each chain
# ends with a plain resume.
KILLS = {
    "step:3": "in the 3rd update, before any evaluation or checkpoint",
    "eval:1": "at the 1st evaluation, before its checkpoint",
    "ckpt:2": "right after the 2nd checkpoint was written (runs queued)",
    "ckpt_write:5": "in a checkpoint write: temporary file written, not yet renamed",
    "claim:3": "right after a queued run was claimed as it joined a slot",
    "weights_write:1": "in the 1st weights write: temporary file written, not yet renamed",
    "weights_done:2": "weights in place, the run not yet marked finished",
    "finish_tx:3": "inside the transaction that finishes a run",
    "finished:1": "right after a run was finished, before the next checkpoint",
    "eval:20": "at the 20th evaluation: two runs finished, two joined",
    "step:100": "at update 100: the queue empty, one run left",
    "drop:1": "every run finished, the cohort's checkpoint not yet removed",
    "ckpt:2,eval:10": "at the 10th evaluation of the resume of a kill",
}
MIGRATE = "migrate:1"  # inside the transaction that migrates a version-4 store
# a full disk: RLIMIT_FSIZE lowered to 1 KiB before the N-th write at the site, and kept
FULL = {"full:ckpt:3": "checkpoint", "full:weights:1": "weights", "full:store:2": "store"}
COPIES = 6

SERVER = r'''
import json, os, resource, signal, sys, time

import groklab.api, groklab.engine, groklab.report.listing  # torch, pandas: imported once
from groklab.cli import main


def install(fault, log, barrier):
    import groklab.engine as engine
    import groklab.engine.finish as finish
    import groklab.store.migrations as migrations
    import groklab.store.store as store_mod
    from groklab.engine.checkpoint import Checkpointer
    from groklab.engine.state import CohortState
    from groklab.store import Store

    site, _, rest = fault.partition(":")
    what, _, n = rest.rpartition(":") if site == "full" else ("", "", rest)
    n, seen = int(n or 0), {}

    def hit(name):
        seen[name] = seen.get(name, 0) + 1
        return name == site and seen[name] == n

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def full():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))

    def hook(state, step, metrics):  # an evaluation hook that changes nothing
        if log:
            with open(log, "a") as f:
                f.write("".join(f"{os.getpid()} {state.specs[r].run_id} {step}\n"
                                for r in state.index))
        if hit("eval"):
            die()

    real_run_specs = engine.run_specs
    engine.run_specs = lambda *a, **kw: real_run_specs(
        *a, **(kw | {"hooks": [*kw.get("hooks", ()), hook]}))

    def around(owner, name, before=None, after=None):
        real = getattr(owner, name)

        def wrapped(*a, **kw):
            if before:
                before()
            out = real(*a, **kw)
            if after:
                after(out)
            return out
        setattr(owner, name, wrapped)

    def wait_for_all(loaded):  # every copy holds the checkpoint before any claims a run
        if barrier and loaded is not None:
            open(os.path.join(barrier["dir"], str(os.getpid())), "w").close()
            end = time.monotonic() + 30
            while len(os.listdir(barrier["dir"])) < barrier["n"] and time.monotonic() < end:
                time.sleep(0.01)

    around(CohortState, "step", before=lambda: hit("step") and die())
    around(Checkpointer, "save", before=lambda: what == "ckpt" and hit("full") and full(),
           after=lambda _: hit("ckpt") and die())
    around(Checkpointer, "load", after=wait_for_all)
    around(Checkpointer, "drop", before=lambda: hit("drop") and die())
    around(Store, "begin", after=lambda got: got and hit("claim") and die())
    around(Store, "finish", before=lambda: what == "store" and hit("full") and full(),
           after=lambda _: hit("finished") and die())
    around(store_mod, "final_metrics", before=lambda: hit("finish_tx") and die())
    around(finish, "save_weights", before=lambda: what == "weights" and hit("full") and full(),
           after=lambda _: hit("weights_done") and die())
    real_fsync = os.fsync

    def fsync(fd):  # a temporary file is whole: kill before it is renamed into place
        real_fsync(fd)
        caller = sys._getframe(1).f_globals.get("__name__")
        if caller == "groklab.engine.checkpoint" and hit("ckpt_write"):
            die()
        if caller == "groklab.store.weights" and hit("weights_write"):
            die()
    os.fsync = fsync
    last = migrations.MIGRATIONS[-1]

    def migrate(db):
        last(db)
        if hit("migrate"):
            die()
    migrations.MIGRATIONS[-1] = migrate


def child(job, i):
    base = f"{job['files']}.{i}"
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                            (1, base + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, base + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        os.dup2(os.open(path, flags), fd)
    sys.stdout = open(1, "w", closefd=False, buffering=1)
    sys.stderr = open(2, "w", closefd=False, buffering=1)
    code = 1
    signal.alarm(120)  # a command that hangs ends (exit -14) instead of the test
    try:
        install(job["fault"], job["log"], job["barrier"])
        code = main(job["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    pids = []
    for i in range(job["copies"]):
        pid = os.fork()
        if pid == 0:
            child(job, i)
        pids.append(pid)
    # reaped before the answer: a killed command's pid no longer exists when the test looks
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    print(json.dumps({"pids": pids, "codes": codes}), flush=True)
'''


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


ENV = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
Done = collections.namedtuple("Done", "code out err pid")


class Server:
    """Runs ``groklab`` command lines in forked children of one process (see the module
    docstring); each answer comes once every child has ended and been reaped."""

    def __init__(self, folder: Path):
        self.folder, self.count = folder, 0
        folder.mkdir()
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=ENV,
                                     preexec_fn=_cap_memory)

    def ready(self) -> None:
        assert self.proc.stdout.readline().strip() == "ready", "the command server did not start"

    def run(self, out: Path, fault: str = "", *, copies: int = 1, log: Path | None = None,
            barrier: Path | None = None, argv: list[str] | None = None) -> list[Done]:
        self.count += 1
        files = self.folder / str(self.count)
        job = {"argv": [*(argv or ARGS), "--out", str(out)], "fault": fault, "copies": copies,
               "files": str(files), "log": log and str(log),
               "barrier": barrier and {"dir": str(barrier), "n": copies}}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        return [Done(code, Path(f"{files}.{i}.out").read_text(),
                     Path(f"{files}.{i}.err").read_text(), pid)
                for i, (code, pid) in enumerate(zip(answer["codes"], answer["pids"],
                                                    strict=True))]

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- what a store holds, read directly ---------------------------------------------------------
CURVE = "SELECT step, train_loss, train_acc, val_loss, val_acc FROM curves WHERE run_id=? " \
        "ORDER BY step"
FINAL = ("final_train_loss", "final_train_acc", "final_val_loss", "final_val_acc",
         "step_val_acc_99", "max_val_acc", "step_train_acc_99", "grokking_delay",
         "step_val_acc_99_held")


def snapshot(out: Path) -> dict:
    """Every run's status, spec, curve rows, final metrics and weights (None: no file)."""
    from safetensors.torch import load_file

    db = sqlite3.connect(out / "groklab.sqlite")
    db.row_factory = sqlite3.Row
    try:
        runs = {}
        for r in db.execute("SELECT * FROM runs"):
            path = out / "weights" / f"{r['id']}.safetensors"
            runs[r["id"]] = {"status": r["status"], "spec": json.loads(r["spec"]),
                             "curve": [tuple(c) for c in db.execute(CURVE, (r["id"],))],
                             "final": tuple(r[k] for k in FINAL),
                             "weights": load_file(path) if path.is_file() else None}
        dup = db.execute("SELECT run_id, step FROM curves GROUP BY run_id, step "
                         "HAVING COUNT(*) > 1").fetchall()
    finally:
        db.close()
    return {"runs": runs, "duplicate_rows": [tuple(d) for d in dup]}


def _same(a, b, exact: bool) -> bool:
    """Equal values (rows, tuples, numbers), bit for bit or to 1e-5 (cohort composition)."""
    if exact or a is None or b is None:
        return a == b
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y, exact) for x, y in zip(a, b, strict=True))
    return abs(a - b) <= 1e-5


def _weights_same(a: dict, b: dict, exact: bool) -> bool:
    """Equal weights, bit for bit or to 1e-2: beside other mates a run's rounding differs,
    and Adam's normalised steps carry a difference of 1e-7 in a curve to ~1e-3 in a weight
    (a different run differs by ~1)."""
    import torch

    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if exact else torch.allclose(a[k], b[k], rtol=0, atol=1e-2)
        for k in a)


def _ends_right(spec: dict, curve: list[tuple]) -> str | None:
    """Why ``curve`` is not a whole curve of ``spec`` (its evaluations every ``eval_every``
    steps up to its budget, or up to the evaluation where its early stop retires it)."""
    every, budget = spec["eval_every"], spec["steps"]
    steps = [row[0] for row in curve]
    if not steps or steps != list(range(every, steps[-1] + 1, every)):
        return f"steps {steps} are not every {every} from {every}"
    threshold, patience = spec.get("stop_val_acc"), spec.get("stop_patience")
    streak, end = 0, budget
    for step, *_, val_acc in curve:
        streak = streak + 1 if threshold is not None and val_acc > threshold else 0
        if threshold is not None and streak >= patience:
            end = step
            break
    return None if steps[-1] == end else f"ends at step {steps[-1]}, not at {end}"


def check(out: Path, ref: dict, *, complete: bool, exact: bool = True) -> list[str]:
    """Every invariant of the store in ``out`` (see the module docstring); ``complete``: the
    command has been run to its end (every run finished); ``exact``: curves, final metrics and
    weights bit for bit those of ``ref`` (else to 1e-5: runs trained beside other mates).
    Returns the violations found."""
    bad: list[str] = []
    shown = groklab("results", str(out), "--json", check=False)
    if shown.returncode != 0:
        return [f"groklab results {out} --json failed: {shown.stderr.strip()}"]
    listed = json.loads(shown.stdout)
    ids = [r["id"] for r in listed]
    if len(ids) != len(set(ids)):
        bad.append(f"run ids appear twice: {sorted(i for i in ids if ids.count(i) > 1)}")
    if any(r["status"] == "running" for r in listed):  # every command of this test has ended
        bad.append("'running' with no live process: "
                   f"{[r['id'] for r in listed if r['status'] == 'running']}")
    snap = snapshot(out)
    if snap["duplicate_rows"]:
        bad.append(f"curve rows recorded twice: {snap['duplicate_rows']}")
    status = {r["id"]: r["status"] for r in listed}
    for rid, run in snap["runs"].items():
        want = ref["runs"].get(rid)
        if want is None:
            bad.append(f"{rid}: a run the command does not name")
            continue
        if status.get(rid) == "finished":
            why = _ends_right(run["spec"], run["curve"])
            if why:
                bad.append(f"{rid}: finished, but its curve {why}")
            if not _same(run["curve"], want["curve"], exact):
                bad.append(f"{rid}: finished curve differs from the uninterrupted run's "
                           f"({len(run['curve'])} rows vs {len(want['curve'])})")
            if run["final"][3] is None or not _same(run["final"], want["final"], exact):
                bad.append(f"{rid}: final metrics {run['final']} differ from the "
                           f"uninterrupted run's {want['final']}")
            if run["weights"] is None:
                bad.append(f"{rid}: finished without a weights file")
            elif not _weights_same(run["weights"], want["weights"], exact):
                bad.append(f"{rid}: final weights differ from the uninterrupted run's")
        elif status.get(rid) == "interrupted":
            if not _same(run["curve"], want["curve"][:len(run["curve"])], exact):
                bad.append(f"{rid}: the rows of an interrupted run are not the start of the "
                           "uninterrupted run's curve")
        else:
            bad.append(f"{rid}: status {status.get(rid)!r}")
    if complete:
        missing = sorted(set(ref["runs"]) - {i for i in ids if status[i] == "finished"})
        if missing:
            bad.append(f"{len(missing)} of {N_RUNS} runs not finished after the command ran to "
                       f"its end (exit 0): {missing} "
                       f"(in the store: {sorted(i for i in missing if i in status)})")
    return bad


def leftovers(out: Path) -> list[str]:
    """Temporary files and checkpoints still there once every run is finished."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.is_file() and (p.name.endswith(".tmp") or p.suffix == ".ckpt"))


def trained_here(err: str) -> int:
    found = re.search(r"(\d+) run\(s\) trained here", err)
    return int(found.group(1)) if found else 0


def downgrade_to_version_4(out: Path) -> None:
    """Make ``out``'s store a version-4 store (before the invocation tables), so opening it
    migrates it."""
    db = sqlite3.connect(out / "groklab.sqlite", isolation_level=None)
    try:
        db.executescript("BEGIN; DROP TABLE invocation_specs; DROP TABLE invocations; "
                         "PRAGMA user_version = 4; COMMIT;")
    finally:
        db.close()


def test_fault_campaign(tmp_path, record_property):
    t0 = time.monotonic()
    ref_out = tmp_path / "reference"
    server = Server(tmp_path / "commands")
    try:
        reference = subprocess.run([*GROKLAB, *ARGS, "--out", str(ref_out)], env=ENV,
                                   capture_output=True, text=True, preexec_fn=_cap_memory,
                                   timeout=300)
        assert reference.returncode == 0, reference.stderr
        store_bytes = (ref_out / "groklab.sqlite").read_bytes()  # for the truncated stores
        server.ready()
        ref = snapshot(ref_out)
        assert len(ref["runs"]) == N_RUNS and check(ref_out, ref, complete=True) == []
        ends = sorted(len(r["curve"]) * 4 for r in ref["runs"].values())
        assert ends == [12, 32, 40, 40, 40, 40], ends  # runs end at different steps
        problems: list[str] = []
        notes: list[str] = []
        killed: set[str] = set()

        def fault(out: Path, name: str, expect: int, label: str) -> bool:
            (done,) = server.run(out, name)
            if done.code != expect:
                problems.append(f"{label}: exit {done.code}, expected {expect} (the fault "
                                f"did not fire as planned): {done.err.strip()[-300:]}")
                return False
            return True

        def resume(out: Path, label: str) -> None:
            (done,) = server.run(out)
            if done.code != 0:
                problems.append(f"{label}, resume: exit {done.code}: {done.err.strip()[-300:]}")
            problems.extend(f"{label}, after the resume: {p}"
                            for p in check(out, ref, complete=True))
            left = leftovers(out)
            if left:
                notes.append(f"{label}: left after every run finished: {', '.join(left)}")

        # 1. SIGKILL at many points, each followed by the same command again
        for chain, where in KILLS.items():
            out = tmp_path / f"kill-{chain.replace(':', '').replace(',', '-')}"
            label = f"SIGKILL {chain} ({where})"
            for i, name in enumerate(chain.split(",")):
                if not fault(out, name, -9, label):
                    break
                killed.add(name if i == 0 else f"{name} in a resume")
                problems.extend(f"{label}, after the kill: {p}"
                                for p in check(out, ref, complete=False))
            resume(out, label)
        # ... and inside a store migration (a version-4 store with interrupted runs)
        out = tmp_path / "kill-migrate"
        label = f"SIGKILL {MIGRATE} (inside the migration of a version-4 store)"
        if fault(out, "ckpt:3", -9, label):
            downgrade_to_version_4(out)
            if fault(out, MIGRATE, -9, label):
                killed.add(MIGRATE)
                db = sqlite3.connect(out / "groklab.sqlite")
                version = db.execute("PRAGMA user_version").fetchone()[0]
                db.close()
                if version != 4:
                    problems.append(f"{label}: the killed migration left version {version}")
            resume(out, label)

        # 2. a full disk at each write site, then the same command with room again
        for name, site in FULL.items():
            out = tmp_path / f"full-{site}"
            label = f"disk full at the {site} write"
            (done,) = server.run(out, name)
            lines = done.err.strip().splitlines()
            if done.code != 1 or len(lines) != 1 or "Traceback" in done.err \
                    or "'interrupted'" not in lines[0]:
                problems.append(f"{label}: exit {done.code} with stderr {done.err.strip()!r}; "
                                "expected exit 1 and one line")
            half = [p for p in leftovers(out) if p.endswith(".tmp")]
            if half:
                problems.append(f"{label}: half-written files kept: {half}")
            problems.extend(f"{label}: {p}" for p in check(out, ref, complete=False))
            resume(out, label)

        # 3. six processes on one store at once: from nothing, and resuming a killed cohort
        #    whose checkpoint every copy loads before any of them claims a run
        for label, pre in (("6 processes at once", None),
                           ("6 processes resuming one checkpoint at once", "ckpt:3")):
            out = tmp_path / ("together" if pre is None else "together-resume")
            if pre is not None and not fault(out, pre, -9, label):
                continue
            before = {rid for rid, run in snapshot(out)["runs"].items()
                      if run["status"] == "finished"} if pre else set()
            log, barrier = tmp_path / f"{out.name}.evals", tmp_path / f"{out.name}.barrier"
            barrier.mkdir()  # used only by copies that load a checkpoint
            done = server.run(out, copies=COPIES, log=log, barrier=barrier)
            if any(d.code != 0 for d in done):
                problems.append(f"{label}: exit codes {[d.code for d in done]}: "
                                + " | ".join(d.err.strip()[-200:] for d in done if d.code))
            trainers = collections.defaultdict(set)
            for line in log.read_text().splitlines():
                pid, rid, _ = line.split()
                trainers[rid].add(int(pid))
            twice = {rid: sorted(p) for rid, p in trainers.items()
                     if len(p) > 1 and rid not in before}
            if twice:
                problems.append(f"{label}: runs trained by more than one process (pids): "
                                f"{twice}")
            said = sum(trained_here(d.err) for d in done)
            if said != N_RUNS - len(before):
                problems.append(f"{label}: the processes say they trained {said} run(s) in "
                                f"all; {N_RUNS - len(before)} were left to train")
            problems.extend(f"{label}: {p}" for p in check(out, ref, complete=True,
                                                          exact=False))

        # 4. files that are not stores: one line, exit 2, the file unchanged, nothing written
        rng = random.Random(27)
        page = int.from_bytes(store_bytes[16:18], "big")
        garbage = {"random bytes": rng.randbytes(8192),
                   "a store cut mid-page": store_bytes[: len(store_bytes) // 2 + 100],
                   "a store cut at a page boundary": store_bytes[: 3 * page]}
        for what, blob in garbage.items():
            out = tmp_path / f"garbage-{len(blob)}"
            out.mkdir()
            (out / "groklab.sqlite").write_bytes(blob)
            commands = {"run": server.run(out)[0]}
            for argv in (["results", str(out), "--json"], ["resume", str(out)]):
                proc = groklab(*argv, check=False)
                commands[argv[0]] = Done(proc.returncode, proc.stdout, proc.stderr, None)
            for command, done in commands.items():
                lines = done.err.strip().splitlines()
                if done.code != 2 or len(lines) != 1:
                    problems.append(f"{what}: groklab {command}: exit {done.code}, stderr "
                                    f"{done.err.strip()!r}; expected exit 2 and one line")
            if (out / "groklab.sqlite").read_bytes() != blob:
                problems.append(f"{what}: the file was changed")
            if sorted(p.name for p in out.iterdir()) != ["groklab.sqlite"]:
                problems.append(f"{what}: files were written: {sorted(os.listdir(out))}")
    finally:
        server.close()

    summary = (f"fault campaign: {len(killed)} kill points, {len(FULL)} disk-full sites, "
               f"{COPIES} processes, {len(garbage)} garbage stores: "
               + ("all invariants hold" if not problems
                  else f"{len(problems)} invariant violation(s)"))
    print(f"\n{summary} (in {time.monotonic() - t0:.0f} s)")
    for note in notes:
        print(f"note: {note}")
    record_property("fault_campaign", summary)
    record_property("counts", {"kill_points": len(killed), "disk_full_sites": len(FULL),
                               "processes": COPIES, "garbage_stores": len(garbage),
                               "violations": len(problems)})
    record_property("kill_points", sorted(killed))
    assert not problems, summary + "\n" + "\n".join(problems)
    assert len(killed) >= 8, summary
