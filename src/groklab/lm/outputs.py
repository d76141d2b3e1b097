"""What a finished language-model run adds to the store: a generated sample and its speed.

After a ``text`` run is finished (its curve and weights saved), the process that records it
generates ``SAMPLE_TOKENS`` characters from its final weights (prompt: a newline,
temperature 0.8, top-k 200, KV cache; docs/protocol.md §7) and records the text as
``sample`` and the speed as the named metric ``gen_tokens_per_s`` at the run's last step; the
corpus's ``alphabet`` is recorded too, so ``groklab sample`` needs only the store and the weights.
The sampling stream is seeded by the run's seed, so a run's sample does not depend on its
cohort mates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from groklab.models.gpt import GPT
from groklab.spec import RunSpec
from groklab.tasks import build_task
from groklab.tasks.text import decode, encode

if TYPE_CHECKING:
    from groklab.store import Store

SAMPLE_TOKENS = 500
TEMPERATURE = 0.8
TOP_K = 200


def is_language_model(spec: RunSpec) -> bool:
    return spec.task == "text"


def gpt_for(settings: Mapping[str, Any], alphabet: str) -> GPT:
    """The model of a language-model run (its spec or stored record) over ``alphabet``."""
    return GPT(vocab_size=len(alphabet), seq_len=int(settings["context"]),
               n_layers=int(settings["n_layers"]), d_model=int(settings["d_model"]),
               n_heads=int(settings["n_heads"]))


def sample(model: GPT, alphabet: str, params: Mapping[str, torch.Tensor], *,
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


def record_samples(store: Store, finished: Mapping[str, tuple[RunSpec, Mapping[str, torch.Tensor]]],
                   device: str) -> None:
    """Generate and record the sample of every language-model run in ``finished``
    (run id -> (spec, final weights)); other runs are skipped."""
    for rid, (spec, params) in finished.items():
        if not is_language_model(spec):
            continue
        alphabet = build_task(spec.task, **spec.task_args()).alphabet
        assert alphabet is not None
        text, speed = sample(gpt_for(spec.model_dump(), alphabet), alphabet, params,
                             seed=spec.seed, device=device)
        last = store.curve(rid)
        store.record_outputs(rid, last[-1].step if last else spec.steps,
                             {"gen_tokens_per_s": speed}, {"sample": text, "alphabet": alphabet})
