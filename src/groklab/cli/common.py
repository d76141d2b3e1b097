"""What every ``groklab`` command shares: one-line errors (exit 2), checks of paths and
devices, ``--set`` parsing, the option types several commands take, and ``--executor``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from groklab.registry import did_you_mean

# typer >= 0.16 vendors click; its UsageError is BadParameter's base class either way.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

# every command's context: -h is --help
HELP_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


class InputError(Exception):
    """A user error: printed as one line, exit code 2."""


def fail(message: str) -> None:
    raise InputError(message)


def check_out_dir(out: Path) -> None:
    """An output folder a command will write: not a file, no file on its path, and writable
    (or creatable)."""
    from groklab.store import STORE_NAME, writable

    if out.exists() and not out.is_dir():
        fail(f"output path {out} exists and is not a folder")
    above = next((a for a in out.absolute().parents if a.exists()), None)
    if above is not None and not above.is_dir():
        fail(f"output path {out}: {above} is a file, not a folder")
    if not writable(out) or ((out / STORE_NAME).exists() and not writable(out / STORE_NAME)):
        fail(f"cannot write to {out}: it is read-only (reading its store works: groklab "
             f"results {out}, groklab report {out} --out DIR, groklab export)")


def read_store(path: Path) -> Any:
    """``path``'s store, opened to read (a read-only folder or file works too); no store or
    an unreadable one is one line, exit 2."""
    from groklab.store import Store, StoreError

    try:
        return Store(path, create=False)
    except (FileNotFoundError, StoreError) as e:
        fail(str(e))


def open_store(out: Path) -> Any:
    """``out``'s store, opened to write (created if need be); one line, exit 2, if it
    cannot be written."""
    from groklab.store import Store, StoreError

    check_out_dir(out)
    try:
        return Store(out)
    except StoreError as e:
        fail(str(e))


def check_device(device: str | None) -> str:
    import torch

    from groklab.engine import default_device

    if device is None:
        return default_device()
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        fail(f"unknown device {device!r}{did_you_mean(kind, ('cpu', 'cuda', 'mps'))}; use cpu, "
             "cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        fail("device 'cuda' requested but no CUDA GPU is available")
    if kind == "mps" and not torch.backends.mps.is_available():
        fail("device 'mps' requested but MPS is not available")
    return device


def key_value(pair: str, flag: str) -> tuple[str, str]:
    """``KEY=VALUE`` split at its first ``=`` (one line naming ``flag``, exit 2, otherwise)."""
    key, sep, text = pair.partition("=")
    key = key.strip()
    if not sep or not key:
        fail(f"{flag} {pair!r}: use KEY=VALUE")
    return key, text


def parse_settings(pairs: list[str] | None) -> dict[str, object]:
    """``--set key=value`` pairs -> settings; values are TOML (``1e-3``, ``"cosine"``, ``[1, 2]``)
    and fall back to plain text (``--set lr_schedule=cosine``); a setting that holds a name
    keeps the text as typed (``--set init_from=1234567890123456`` is an id, not a number). A
    key given twice is an error naming both values. The keys are the declared settings
    ``--set`` takes (``groklab.settings``: not ``seed`` and ``lr_name``, which --seed and --lr
    give)."""
    import tomllib

    from groklab.settings import SETTINGS

    out: dict[str, object] = {}
    typed: dict[str, str] = {}
    known = [k for k, s in SETTINGS.items() if s.set_key]
    for pair in pairs or []:
        key, text = key_value(pair, "--set")
        if key not in known:
            fail(f"--set {key}: unknown run setting{did_you_mean(key, known)}; known: "
                 f"{', '.join(known)}")
        if key in typed:
            fail(f"--set {key} is given twice ({typed[key]} and {text.strip()}); give it once")
        typed[key] = text.strip()
        try:
            out[key] = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = text.strip()
        if _holds_text(SETTINGS[key].type) and not isinstance(out[key], str):
            out[key] = text.strip()
    return out


def _holds_text(annotation: Any) -> bool:
    """Whether a setting holds text only (a name, an id, a path): ``str``, ``str | None``."""
    from typing import get_args

    return annotation is str or set(get_args(annotation)) == {str, type(None)}


def folder(text: str) -> Path:
    """An output folder given on the command line: any path but empty text (which would
    silently mean the current folder)."""
    if not text.strip():
        raise typer.BadParameter("give a folder, not empty text")
    return Path(text)


Settings = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="Any other run setting, e.g. --set grad_clip=1.0 "
    "--set lr_schedule=cosine --set semantics=1 (repeatable; see README, Settings).")]

Out = Annotated[Path, typer.Option("--out", "-o", parser=folder, metavar="<path>",
                                   help="Output folder (holds groklab.sqlite).")]
Device = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or mps (default: best).")]
Yes = Annotated[bool, typer.Option(
    "--yes", help="Start even a command of more than 10,000 runs or of a budget estimated "
    "at more than a week (refused without it).")]
Slots = Annotated[int | None, typer.Option(
    "--slots", min=1, help="At most N runs of a cohort train at once; the others wait in a "
    "queue and take a slot as a run ends (default: all; fewer when memory says so).")]
Compile = Annotated[bool | None, typer.Option(
    "--compile/--no-compile", show_default=False,
    help="Run the model and the optimiser's element-wise chain through torch.compile: "
    "faster steps after a one-off compile of about a minute per cohort shape on a CPU "
    "(cached on disk). Default: on a CPU, compiled when each run holds at least 3e13 "
    "FLOPs (the paper's Transformer: about 6,800 steps at batch 512), where it repays "
    "itself; results differ by float rounding only, never in a run's id.")]


Executor = Annotated[str, typer.Option(
    help="Where cohorts train: 'local' (this process) or 'ray' (Ray tasks on a cluster; "
    "needs the 'ray' extra).")]
Address = Annotated[str | None, typer.Option(
    help="Ray cluster address ('auto', 'ray://host:10001', host:port); default: start a "
    "local Ray instance.")]
GpusPerCohort = Annotated[float, typer.Option(
    help="GPUs a cohort asks Ray for (its runs train on CUDA when > 0).")]
CpusPerCohort = Annotated[float, typer.Option(help="CPUs a cohort asks Ray for.")]


def make_executor(executor: str, address: str | None, gpus: float, cpus: float) -> Any:
    """The executor an ``--executor`` choice names (None: in-process, no Ray import)."""
    if executor == "local":
        if address is not None or gpus:
            fail("--address and --gpus-per-cohort need --executor ray")
        return None
    if executor != "ray":
        fail(f"--executor {executor!r}{did_you_mean(executor, ('local', 'ray'))}: use local or "
             "ray")
    if gpus < 0 or cpus <= 0:
        fail("--gpus-per-cohort must be >= 0 and --cpus-per-cohort > 0")
    from groklab.integrations import MissingExtra
    from groklab.integrations.ray_executor import RayExecutor

    try:
        return RayExecutor(address=address, gpus_per_cohort=gpus, cpus_per_cohort=cpus)
    except MissingExtra as e:
        fail(str(e))
