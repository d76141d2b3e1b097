"""Character language modelling on a text corpus (docs/protocol.md §7): the ``text`` task.

A corpus is any UTF-8 text file, or ``tinyshakespeare`` (shipped with the package as
``groklab/data/tinyshakespeare.txt.gz``, so it works offline). Its alphabet is the sorted set
of characters it holds; token i is the alphabet's i-th character. The first 90 % of the
tokens are the training part and the last 10 % the validation part, as in nanoGPT.

An example is a window of ``context`` tokens and its targets are the same window shifted by
one (the next character at every position). The table of all windows is two strided *views*
of the token tensor (``unfold``; no copy), so indexing rows gathers exactly the windows a
batch needs. Training windows lie wholly inside the training part and validation windows
inside the validation part; the split is fixed (``TaskData.split``), not drawn from the seed.

A run's identity names the corpus by the SHA-256 of its bytes (``corpus_digest``), not by
its path, so the same text gives the same run id on every machine.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch

from groklab.tasks.base import TaskData, TaskError, register_task

BUILTIN = "tinyshakespeare"
TRAIN_PART = 0.9


@dataclass(frozen=True)
class Corpus:
    text: str
    digest: str  # "sha256:<hex>" of the UTF-8 bytes

    @property
    def alphabet(self) -> str:
        return "".join(sorted(set(self.text)))


def _read_bytes(source: str) -> bytes:
    if source == BUILTIN:
        ref = resources.files("groklab") / "data" / "tinyshakespeare.txt.gz"
        return gzip.decompress(ref.read_bytes())
    path = Path(source)
    if not path.is_file():
        raise TaskError(f"corpus {source!r}: no such file (give a UTF-8 text file or "
                        f"{BUILTIN!r})")
    return path.read_bytes()


@lru_cache(maxsize=8)
def _load(source: str, stamp: tuple[int, int] | None) -> Corpus:
    raw = _read_bytes(source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TaskError(f"corpus {source!r} is not UTF-8 text (byte {e.start}: "
                        f"{raw[e.start:e.start + 1]!r})") from None
    if "\x00" in text:
        raise TaskError(f"corpus {source!r} is not text (it holds NUL bytes)")
    if not text:
        raise TaskError(f"corpus {source!r} is empty")
    return Corpus(text, "sha256:" + hashlib.sha256(raw).hexdigest())


def load_corpus(source: str) -> Corpus:
    """The corpus ``source`` names (cached; a file that changed on disk is read again)."""
    stamp = None
    if source != BUILTIN:
        try:
            st = Path(source).stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            pass
    return _load(source, stamp)


def corpus_digest(source: str) -> str:
    return load_corpus(source).digest


def encode(text: str, alphabet: str) -> torch.Tensor:
    """Characters -> token ids (``ValueError`` naming a character outside the alphabet)."""
    index = {c: i for i, c in enumerate(alphabet)}
    try:
        return torch.tensor([index[c] for c in text], dtype=torch.long)
    except KeyError as e:
        raise ValueError(f"character {e.args[0]!r} is not in the corpus's alphabet") from None


def decode(tokens: list[int] | torch.Tensor, alphabet: str) -> str:
    return "".join(alphabet[int(t)] for t in tokens)


@register_task("text")
def text(corpus: str = BUILTIN, context: int = 64) -> TaskData:
    """Windows of ``context`` characters and their next characters (see the module doc)."""
    found = load_corpus(corpus)
    alphabet = found.alphabet
    tokens = torch.frombuffer(bytearray(found.text.encode("utf-32-le")), dtype=torch.int32)
    lookup = torch.full((max(map(ord, alphabet)) + 1,), -1, dtype=torch.long)
    lookup[torch.tensor([ord(c) for c in alphabet])] = torch.arange(len(alphabet))
    tokens = lookup[tokens.long()]
    n = len(tokens)
    n_train = int(TRAIN_PART * n)
    n_val_windows = n - n_train - context
    if n_train - context < 1 or n_val_windows < 1:
        raise TaskError(f"context {context} is too long for corpus {corpus!r} of {n} characters "
                        f"(each part, {n_train} train and {n - n_train} validation, needs more "
                        "than context + 1)")
    inputs = tokens[:-1].unfold(0, context, 1)  # row s: tokens s .. s+T-1
    targets = tokens[1:].unfold(0, context, 1)  # row s: tokens s+1 .. s+T
    train = torch.arange(0, n_train - context)
    val = torch.arange(n_train, n - context)
    return TaskData("text", inputs, targets, vocab_size=len(alphabet),
                    n_classes=len(alphabet), split=(train, val), alphabet=alphabet)
