"""⊥Grad (``grad_ortho``): each run's every weight tensor's gradient made orthogonal to the
tensor and rescaled to its norm, against the published definition written out here on
torch.nn models, then torch.optim.AdamW; its place after clipping; cohort = solo."""

import pytest
import torch

from groklab.engine import train_cohort
from groklab.engine.params import FlatParams
from groklab.models import Transformer
from groklab.models.layout import ParamInfo, ParamLayout
from groklab.optim import build_optimizer
from groklab.optim.ortho import OrthoGrad
from groklab.optim.transforms import (
    AddDecayedWeights,
    Chain,
    ScaleByAdam,
    ScaleByRate,
    Subset,
)
from groklab.rates import LR_CONFIGS
from groklab.spec import RunSpec


def orthogonalized(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The definition of Prieto et al. (2025), official code ``OrthoGrad``: per tensor, the
    component of g along w removed, then rescaled to g's norm (eps 1e-30 in both places)."""
    w, flat = w.reshape(-1), g.reshape(-1)
    proj = torch.dot(w, flat) / (torch.dot(w, w) + 1e-30)
    ortho = flat - proj * w
    return (ortho * (flat.norm(2) / (ortho.norm(2) + 1e-30))).view_as(g)


def torch_nn_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.ModuleDict({"emb": torch.nn.Embedding(9, 6), "fc": torch.nn.Linear(12, 10),
                                 "ln": torch.nn.LayerNorm(10), "head": torch.nn.Linear(10, 5)})
    with torch.no_grad():
        model["fc"].bias.zero_()  # an all-zero tensor keeps its gradient
    return model


def forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    h = model["emb"](x).flatten(1)
    return model["head"](torch.relu(model["ln"](model["fc"](h))))


KINDS = {"emb.weight": "embedding", "fc.weight": "matrix", "fc.bias": "bias",
         "ln.weight": "norm", "ln.bias": "norm", "head.weight": "matrix", "head.bias": "bias"}


def test_orthograd_equals_the_definition_on_torch_nn_models_then_adamw():
    """Three torch.nn models (runs), ⊥Grad on runs 0 and 2 only (a mixed cohort), AdamW
    after it; the gradients are each model's own from real backward passes."""
    R, lr, wd, steps = 3, 1e-3, 0.1, 8
    models = [torch_nn_model(seed) for seed in range(R)]
    ortho_rows = [0, 2]
    names = [n for n, _ in models[0].named_parameters()]
    infos = {n: ParamInfo(tuple(p.shape), KINDS[n], 0) for n, p in models[0].named_parameters()}
    layout = ParamLayout.build(infos, [(".", "lower")], 1)
    flat = FlatParams.stack([{n: p.detach().clone() for n, p in m.named_parameters()}
                             for m in models], torch.device("cpu"))
    col = lambda v: torch.full((R, 1), v)  # noqa: E731
    ours = Chain(flat.flat, [Subset(OrthoGrad(list(layout.offsets.values())), ortho_rows),
                             ScaleByAdam({"beta1": col(0.9), "beta2": col(0.98),
                                          "eps": col(1e-8)}),
                             AddDecayedWeights({"wd": col(wd)}), ScaleByRate()],
                 lambda t: torch.full_like(flat.flat, lr))
    opts = [torch.optim.AdamW(m.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-8,
                              weight_decay=wd) for m in models]
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x, y = torch.randint(9, (16, 2), generator=gen), torch.randint(5, (16,), generator=gen)
        grads = []
        for r, (m, opt) in enumerate(zip(models, opts, strict=True)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(forward(m, x), y).backward()
            grads.append(torch.cat([p.grad.reshape(-1) for p in m.parameters()]))
            if r in ortho_rows:
                for p in m.parameters():
                    p.grad = orthogonalized(p.detach(), p.grad)
            opt.step()
        ours.step(torch.stack(grads))
    # measured: at most 8e-7 apart, on the embeddings (|w| up to 4: an ulp or two), in the
    # runs without ⊥Grad as well; one ⊥Grad step alone agrees to 3e-8
    for r, m in enumerate(models):
        for n, p in zip(names, m.parameters(), strict=True):
            torch.testing.assert_close(flat.views[n][r], p.detach(), rtol=1e-5, atol=1e-6,
                                       msg=lambda s, r=r, n=n: f"run {r} {n}: {s}")


def test_the_projected_gradient_is_orthogonal_and_keeps_its_norm():
    segments = [(0, 6), (6, 10), (10, 12)]
    params = torch.randn(2, 12, generator=torch.Generator().manual_seed(1))
    params[1, 10:] = 0.0  # a zero tensor: its gradient passes unchanged
    g = torch.randn(2, 12, generator=torch.Generator().manual_seed(2))
    chain = Chain(params, [OrthoGrad(segments), ScaleByRate()], lambda t: torch.ones_like(params))
    before = params.clone()
    chain.step(g.clone())
    out = before - params  # the update with unit rates: the projected gradient
    for r in range(2):
        for a, b in segments:
            w, gr, o = before[r, a:b], g[r, a:b], out[r, a:b]
            torch.testing.assert_close(o, orthogonalized(w, gr))
            assert o.norm().item() == pytest.approx(gr.norm().item(), rel=1e-5)
            if w.abs().sum() > 0:
                assert abs(torch.dot(o, w).item()) < 1e-5 * o.norm().item() * w.norm().item()
    torch.testing.assert_close(out[1, 10:], g[1, 10:])


MODEL = Transformer(vocab_size=9, n_classes=7, seq_len=4, n_layers=2, d_model=16, n_heads=2,
                    d_ff=32)


def test_grad_ortho_comes_after_clipping_and_before_the_optimiser():
    """A groklab run with ⊥Grad and clipping = torch: clip_grad_norm_, then ⊥Grad per tensor,
    then AdamW (the order of a loop that clips p.grad and steps the OrthoGrad wrapper)."""
    spec = RunSpec(task="x_plus_y", p=7, grad_ortho=True, grad_clip=0.5, warmup=0,
                   lr=LR_CONFIGS["baseline"], weight_decay=0.3)
    init = MODEL.init(torch.Generator().manual_seed(3))
    flat = FlatParams.stack([init], torch.device("cpu"))
    layout = ParamLayout.build(MODEL.param_info(), MODEL.default_groups(), MODEL.n_blocks)
    ours, _ = build_optimizer([spec], layout, flat.flat)
    params = {n: torch.nn.Parameter(t.clone()) for n, t in init.items()}
    opt = torch.optim.AdamW(params.values(), lr=1e-3, betas=(0.9, 0.98), eps=1e-8,
                            weight_decay=0.3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        grads = {n: torch.randn(t.shape, generator=gen) for n, t in init.items()}
        ours.step(torch.cat([grads[n].reshape(1, -1) for n in init], 1))
        for n, p in params.items():
            p.grad = grads[n].clone()
        torch.nn.utils.clip_grad_norm_(params.values(), 0.5)
        for p in params.values():
            p.grad = orthogonalized(p.detach(), p.grad)
        opt.step()
    for n, p in params.items():
        torch.testing.assert_close(flat.views[n][0], p.detach(), rtol=1e-5, atol=1e-6)


def test_a_grad_ortho_run_alone_equals_it_inside_a_mixed_cohort():
    base = dict(task="x_plus_y", p=11, d_model=16, n_heads=2, steps=20, batch_size=32,
                eval_every=5)
    target = RunSpec(**base, seed=1, grad_ortho=True, weight_decay=0.0, grad_filter="ema",
                     lr=LR_CONFIGS["layerwise"])
    mates = [RunSpec(**base, seed=0), target,
             RunSpec(**base, seed=2, grad_ortho=True, loss="stablemax", sampling="balanced",
                     embedding_lr="adaptive", embedding_lr_every=5, dropout=0.1)]
    alone = train_cohort([target], progress=False)[0]
    together = train_cohort(mates, progress=False)[1]
    a = torch.tensor([[r.train_loss, r.val_loss, r.train_acc, r.val_acc] for r in alone])
    b = torch.tensor([[r.train_loss, r.val_loss, r.train_acc, r.val_acc] for r in together])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    plain = train_cohort([RunSpec(**base, seed=1, weight_decay=0.0, grad_filter="ema",
                                  lr=LR_CONFIGS["layerwise"])], progress=False)[0]
    assert plain[-1].train_loss != alone[-1].train_loss  # ⊥Grad changes the run


def test_grad_ortho_is_a_per_run_setting_in_the_id_only_when_set():
    assert "grad_ortho" not in RunSpec().identity()
    assert RunSpec(grad_ortho=True).run_id != RunSpec().run_id
    assert RunSpec(grad_ortho=True).cohort_key() == RunSpec().cohort_key()
