"""ms per training iteration of the character LM: groklab's cohort engine (a cohort of one,
and per run in a cohort of R) against a plain single-model PyTorch implementation of the
same configuration, nanoGPT-style and eager (``groklab.lm.reference.PlainGPT``,
``torch.optim.AdamW`` with nanoGPT's decay groups, ``clip_grad_norm_``, a random batch of
windows and the rate set every iteration).

    python benchmarks/lm_vs_plain.py                       # the CPU size of `groklab lm`
    python benchmarks/lm_vs_plain.py --size paper --device cuda --iters 50

Both sides run the same number of iterations after the same warm-up, alternately, several
rounds; the median round is reported. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from groklab.engine.state import CohortState
from groklab.lm.reference import PlainGPT
from groklab.lm.settings import lm_settings
from groklab.spec import RunSpec


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(spec: RunSpec, state: CohortState, device: torch.device):
    """A closure running n iterations of the plain implementation."""
    model = PlainGPT(state.model.vocab_size, spec.context, spec.n_layers, spec.d_model,
                     spec.n_heads, spec.dropout).to(device)
    model.load_groklab({k: v.to(device) for k, v in state.params.run(0).items()}).train()
    opt = torch.optim.AdamW(model.optimizer_groups(spec.weight_decay), lr=spec.lr[0],
                            betas=(spec.beta1, spec.beta2))
    train = state.data.train_idx[0]
    gen = torch.Generator().manual_seed(0)
    it = 0

    def run(n: int) -> None:
        nonlocal it
        for _ in range(n):
            rows = train[torch.randint(len(train), (spec.batch_size,), generator=gen).to(device)]
            x, y = state.inputs[rows], state.targets[rows]
            for g in opt.param_groups:
                g["lr"] = spec.lr[0] * min(1.0, (it + 1) / (spec.warmup + 1))
            _, loss = model(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
            opt.step()
            it += 1

    return run


def timed(run, n: int, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    run(n)
    sync(device)
    return (time.perf_counter() - t0) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="cpu", choices=["cpu", "paper"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cohort", type=int, default=4, help="R of the cohort timed per run")
    ap.add_argument("--dropout", type=float, default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    settings = lm_settings(args.size) | {"steps": 10**6}
    if args.dropout is not None:
        settings["dropout"] = args.dropout
    specs = [RunSpec(**settings, seed=s) for s in range(args.cohort)]
    one = CohortState(specs[:1], device)
    many = CohortState(specs, device)
    sides = {"plain": plain_loop(specs[0], one, device),
             "groklab_1": lambda n: [one.step() for _ in range(n)],
             f"groklab_{args.cohort}": lambda n: [many.step() for _ in range(n)]}
    for run in sides.values():
        run(3)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(args.rounds):
        for name, run in sides.items():
            times[name].append(timed(run, args.iters, device))
    ms = {k: statistics.median(v) for k, v in times.items()}
    flops = one.model.train_step_flops(specs[0].batch_size)
    cohort = f"groklab_{args.cohort}"
    print(json.dumps({
        "size": args.size, "device": str(device), "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "dropout": settings["dropout"],
        "ms_per_iter": {k: round(v, 2) for k, v in ms.items()},
        f"{cohort}_per_run_ms": round(ms[cohort] / args.cohort, 2),
        "groklab_1_over_plain": round(ms["groklab_1"] / ms["plain"], 3),
        f"{cohort}_per_run_over_plain": round(ms[cohort] / args.cohort / ms["plain"], 3),
        "gflops_per_s": {k: round(flops * (args.cohort if k == cohort else 1) / v / 1e6, 1)
                         for k, v in ms.items()},
        "rounds_ms": {k: [round(x, 1) for x in v] for k, v in times.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
