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

The task's registration is the language-model plug-in's door into the core (docs/design.md,
Plug-in doors): its runs are language models; it trains model ``gpt`` only (a check the
model registers too); and a finished run adds a generated sample (``sample_outputs``):
``SAMPLE_TOKENS`` characters from its final weights (prompt: a newline, temperature 0.8,
top-k 200, KV cache; docs/protocol.md §7), recorded as the text ``sample`` with the speed as
the named metric ``gen_tokens_per_s`` at the run's last step, and the corpus's
``alphabet``, so ``groklab sample`` needs only the store and the weights. The sampling
stream is seeded by the run's seed, so a run's sample does not depend on its cohort mates.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import torch

from groklab.tasks.base import Outputs, TaskData, TaskError, register_task

BUILTIN = "tinyshakespeare"
TRAIN_PART = 0.9
SAMPLE_TOKENS = 500
TEMPERATURE = 0.8
TOP_K = 200


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


class TextModel(Protocol):
    """A model that continues token sequences (``models.gpt.GPT.generate``)."""

    def generate(self, params: dict[str, torch.Tensor], prompt: torch.Tensor, n_new: int, *,
                 temperature: float, top_k: int | None,
                 generators: list[torch.Generator] | None) -> tuple[torch.Tensor, float]: ...


def sample(model: TextModel, alphabet: str, params: Mapping[str, torch.Tensor], *,
           prompt: str = "\n", tokens: int = SAMPLE_TOKENS, temperature: float = TEMPERATURE,
           top_k: int | None = TOP_K, seed: int = 0, device: str = "cpu") -> tuple[str, float]:
    """``prompt`` continued by ``tokens`` characters from one run's weights (``ValueError``
    for a prompt character outside the alphabet); returns the generated text (prompt
    excluded) and the generation speed in tokens per second."""
    ids = encode(prompt, alphabet).to(device).view(1, -1)
    stacked = {k: v.detach().to(device, torch.float32).unsqueeze(0) for k, v in params.items()}
    gen = torch.Generator(device=device).manual_seed(seed)
    out, seconds = model.generate(stacked, ids, tokens, temperature=temperature, top_k=top_k,
                                  generators=[gen])
    return decode(out[0, ids.shape[1]:].cpu(), alphabet), tokens / max(seconds, 1e-9)


def sample_outputs(spec: Any, task: TaskData, model: TextModel,
                   params: Mapping[str, torch.Tensor], device: str) -> Outputs:
    """The text task's output hook: a finished run's sample (see the module doc)."""
    alphabet = task.alphabet
    assert alphabet is not None
    generated, speed = sample(model, alphabet, params, seed=spec.seed, device=device)
    return Outputs({"gen_tokens_per_s": speed}, {"sample": generated, "alphabet": alphabet})


def trains_gpt(spec: Any) -> None:
    """The text task and model ``gpt`` train only each other (registered by both)."""
    if (spec.task == "text") != (spec.model == "gpt"):
        raise ValueError("the text task trains model 'gpt', and model 'gpt' trains the text "
                         f"task (got task {spec.task!r} with model {spec.model!r})")


@register_task("text", check=trains_gpt, outputs=sample_outputs, language_model=True,
               identity=lambda args: {"corpus": corpus_digest(args["corpus"])})
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
