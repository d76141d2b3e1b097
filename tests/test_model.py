"""The stacked Transformer: pruned last block, shape, parameter count, per-run independence."""

import torch

from groklab.engine.params import FlatParams
from groklab.models import Transformer


def test_parameter_count_matches_the_paper():
    m = Transformer(vocab_size=99, n_classes=97, seq_len=4)
    n = sum(torch.Size(s).numel() for s in m.shapes().values())
    assert 4.1e5 < n < 4.3e5  # docs/protocol.md §3: about 4.2·10^5 for p = 97


def test_pruned_last_block_equals_full_computation():
    full = Transformer(vocab_size=25, n_classes=23, seq_len=4, prune_last=False)
    pruned = Transformer(vocab_size=25, n_classes=23, seq_len=4, prune_last=True)
    inits = [full.init(torch.Generator().manual_seed(s)) for s in range(3)]
    params = FlatParams.stack(inits, torch.device("cpu")).views
    tokens = torch.randint(0, 25, (3, 64, 4), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = full.forward(params, tokens), pruned.forward(params, tokens)
    assert a.shape == (3, 64, 23)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_causal_mask_earlier_positions_ignore_later_tokens():
    m = Transformer(vocab_size=25, n_classes=23, seq_len=4, n_layers=1, prune_last=False)
    params = FlatParams.stack([m.init(torch.Generator().manual_seed(0))], torch.device("cpu"))
    x = torch.randn(1, 1, 4, 128).repeat(1, 2, 1, 1)
    x[0, 1, 3] += 1.0  # the two sequences differ only at the last position
    with torch.no_grad():
        h = m._block(params.views, "blocks.0.", x, lambda t: t)  # no dropout
    torch.testing.assert_close(h[0, 0, :3], h[0, 1, :3])
    assert not torch.allclose(h[0, 0, 3], h[0, 1, 3])


def test_runs_in_a_stack_do_not_interact():
    m = Transformer(vocab_size=25, n_classes=23, seq_len=4)
    inits = [m.init(torch.Generator().manual_seed(s)) for s in range(2)]
    both = FlatParams.stack(inits, torch.device("cpu")).views
    alone = FlatParams.stack(inits[1:], torch.device("cpu")).views
    tokens = torch.randint(0, 25, (2, 16, 4), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(m.forward(both, tokens)[1], m.forward(alone, tokens[1:])[0])


def _measured_flops(model, params, tokens, backward: bool) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        logits = model.forward(params, tokens)
        if backward:
            logits.sum().backward()
    return counter.get_total_flops()


def test_flop_counter_matches_hand_count_and_torch_counter():
    tiny = Transformer(vocab_size=7, n_classes=5, seq_len=4, n_layers=2, d_model=8, n_heads=2,
                       d_ff=16)
    # Hand count per example, T=4, D=8, F=16, C=5 (a matmul m×k·k×n costs 2·m·n·k):
    #   full block: qkv 2·4·8·24=1536, scores 2·4·4·8=256, att·v 256, proj 2·4·8·8=512,
    #               ffn 2·4·8·16 + 2·4·16·8 = 2048                             -> 4608
    #   last block: kv 2·4·8·16=1024, q 2·1·8·8=128, scores 2·1·4·8=64, att·v 64,
    #               proj 128, ffn 2·8·16 + 2·16·8 = 512                       -> 1920
    #   head 2·8·5=80                                                        -> 6608
    assert tiny.forward_flops(1) == 6608
    assert tiny.forward_flops(10) == 66080 and tiny.train_step_flops(10) == 3 * 66080
    params = FlatParams.stack([tiny.init(torch.Generator().manual_seed(0))] * 3,
                              torch.device("cpu")).views
    tokens = torch.randint(0, 7, (3, 10, 4))
    assert _measured_flops(tiny, params, tokens, backward=False) == 3 * tiny.forward_flops(10)
    assert _measured_flops(tiny, params, tokens, backward=True) == 3 * tiny.train_step_flops(10)
