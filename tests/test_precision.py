"""bf16 autocast: a real change of arithmetic that leaves the training curve where it was."""

import torch

from groklab.engine.cohort import train_cohort
from groklab.engine.params import FlatParams
from groklab.models import Transformer
from groklab.spec import RunSpec


def test_bf16_autocast_computes_matmuls_in_bf16():
    m = Transformer(vocab_size=25, n_classes=23, seq_len=4)
    views = FlatParams.stack([m.init(torch.Generator().manual_seed(0))], torch.device("cpu")).views
    tokens = torch.randint(0, 25, (1, 8, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = m.forward(views, tokens)
    assert logits.dtype == torch.bfloat16
    assert views["head.weight"].dtype == torch.float32  # master weights stay fp32


def test_bf16_and_fp32_agree_on_a_short_run():
    base = dict(task="x_plus_y", p=23, steps=100, batch_size=64, eval_every=10,
                train_fraction=0.8, d_model=64)
    fp32 = train_cohort([RunSpec(**base, seed=s) for s in range(2)], progress=False)
    bf16 = train_cohort([RunSpec(**base, seed=s, precision="bf16") for s in range(2)],
                        progress=False)
    a = torch.tensor([[r.train_loss, r.val_loss] for curve in fp32 for r in curve])
    b = torch.tensor([[r.train_loss, r.val_loss] for curve in bf16 for r in curve])
    # bf16 rounds each product to 8 bits of mantissa (0.4 % relative), but the loss is a
    # mean over the batch and the errors are unbiased: measured after 100 AdamW steps, the
    # largest difference is 4.2e-4 at width 64 (1.1e-3 at 128; on losses near 3), and one
    # validation example of 106 (0.0094) in accuracy. 1e-2 keeps a 9x margin, while a broken
    # bf16 path (loss in bf16, rates or state lost) differs by far more. The curves are not
    # identical, so bf16 arithmetic really happened.
    assert not torch.equal(a, b)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-2)
    acc_a = [r.val_acc for curve in fp32 for r in curve]
    acc_b = [r.val_acc for curve in bf16 for r in curve]
    assert max(abs(x - y) for x, y in zip(acc_a, acc_b, strict=True)) <= 0.02
