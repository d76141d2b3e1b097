"""Progress shown the way its reader sees it (a leaf module: tqdm and the standard library).

``bar(...)`` takes tqdm's arguments. In a terminal (or a notebook) it is a tqdm bar, redrawn
in place. Anywhere else (a pipe, a log file) it is ``LineProgress``: whole lines, one each
time another 5 % is done or a minute has passed, and one at the end; no carriage returns and
no cursor escapes, so a log of a long study stays a few lines per cohort.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tqdm import tqdm as std_tqdm
from tqdm.auto import tqdm as auto_tqdm
from tqdm.autonotebook import tqdm as chosen_tqdm  # (imported quietly by tqdm.auto first)

LINE_STEP = 0.05  # a line each time this fraction more is done ...
LINE_SECONDS = 60.0  # ... or this many seconds have passed, whichever comes first


def bar(iterable: Iterable[Any] | None = None, *, file: IO[str] | None = None,
        **kwargs: Any) -> Any:
    """A progress bar (tqdm's arguments) on ``file`` (default: stderr): tqdm in a terminal or
    a notebook, ``LineProgress`` elsewhere."""
    stream = file if file is not None else sys.stderr
    in_notebook = chosen_tqdm is not std_tqdm  # tqdm.auto chose its notebook widget
    if in_notebook or _is_terminal(stream):
        return auto_tqdm(iterable, file=file, **kwargs)
    return LineProgress(iterable, file=stream, **kwargs)


def say(line: str) -> None:
    """One line on stderr that leaves any bar being drawn intact (tqdm moves it below)."""
    std_tqdm.write(line, file=sys.stderr)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class LineProgress:
    """The part of tqdm's interface groklab uses, written as plain lines (see the module
    docstring): ``update``, ``n`` (settable), ``total``, ``disable``,
    ``set_description_str``, ``set_postfix_str``, ``close``, iteration and ``with``."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, file: IO[str],
                 total: float | None = None, initial: float = 0, desc: str | None = None,
                 disable: bool = False, unit: str = "it", **_: Any):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.file, self.total, self.n, self.unit = file, total, initial, unit
        self.desc, self.postfix, self.disable = desc or "", "", disable
        self.start = self.shown_at = time.monotonic()
        self.shown_step = self._step()  # the 5 % step last written (the start: not written)
        self.shown_n: float | None = None
        self.closed = False

    def _step(self) -> int:
        if not self.total:
            return 0
        return math.floor(min(self.n / self.total, 1.0) / LINE_STEP + 1e-9)

    def update(self, n: float = 1) -> None:
        """Advance by ``n``; write a line if another 5 % is done or a minute has passed."""
        self.n += n
        if self.disable:
            return
        now = time.monotonic()
        if self._step() > self.shown_step or now - self.shown_at >= LINE_SECONDS:
            self._write(now)

    def refresh(self) -> None:
        """tqdm's redraw: nothing to redraw in a log."""

    def set_description_str(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def _write(self, now: float) -> None:
        elapsed = now - self.start
        if self.total:
            done = (f"{_count(self.n)}/{_count(self.total)} {self.unit} "
                    f"({100 * self.n / self.total:.0f} %)")
            rate = self.n / elapsed if elapsed > 0 else 0.0
            left = (self.total - self.n) / rate if rate > 0 else None
            times = f"{_clock(elapsed)} elapsed" + (
                f", {_clock(left)} left" if left is not None and self.n < self.total else "")
        else:
            done, times = f"{_count(self.n)} {self.unit}", f"{_clock(elapsed)} elapsed"
        parts = [p for p in (f"{self.desc}:" if self.desc else "", done, times, self.postfix)
                 if p]
        self.file.write(" ".join(parts) + "\n")
        self.file.flush()
        self.shown_at, self.shown_step, self.shown_n = now, self._step(), self.n

    def close(self) -> None:
        """Write the final state once (unless the last line already showed it)."""
        if self.closed:
            return
        self.closed = True
        if not self.disable and self.n != self.shown_n and self.n > 0:
            self._write(time.monotonic())

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None, "LineProgress: iterating needs an iterable"
        for item in self.iterable:
            yield item
            self.update(1)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _count(n: float) -> str:
    """``12`` -> ``'12'``; a fractional count (runs part-way done) -> ``'1.3'``."""
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.1f}"


def _clock(seconds: float) -> str:
    """``73.4`` -> ``'1:13'``; an hour or more: ``'1:02:03'``."""
    s = int(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"
