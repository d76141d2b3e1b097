"""The character language model (docs/protocol.md §7): the text task, the stacked GPT
against a plain torch.nn one, per-parameter rates against docs/protocol.md §5's formulas,
nanoGPT's optimiser against torch.optim, cohort = solo with dropout, sampling with a KV
cache, and the commands."""

import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny

from groklab.cli import main
from groklab.engine import train_cohort
from groklab.engine.loss import NextTokenPrediction
from groklab.engine.state import CohortState
from groklab.lm.reference import PlainGPT
from groklab.lm.settings import lm_settings, parse_lr_decay
from groklab.models.gpt import GPT
from groklab.spec import RunSpec
from groklab.store import Store
from groklab.studies import preset
from groklab.tasks import build_task
from groklab.tasks.text import load_corpus

# TINY's step budget and evaluation: a 3-layer GPT on text
BASE = tiny("p", task="text", model="gpt", context=16, n_layers=3, d_model=32, n_heads=4,
            batch_size=8, eval_batches=2, warmup=4, lr=(3e-3,) * 3, lr_schedule="cosine",
            min_lr_ratio=0.1, beta1=0.9, beta2=0.99, weight_decay=0.1, decay_params="2d",
            grad_clip=1.0)


def corpus_file(tmp_path, text="abcab\ncabbac " * 40):
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return path


# -- the text task ---------------------------------------------------------------------------
def test_text_windows_split_and_alphabet(tmp_path):
    text = "".join(chr(97 + (i * 7) % 5) for i in range(300)) + "é\n"
    path = corpus_file(tmp_path, text)
    task = build_task("text", corpus=str(path), context=10)
    alphabet = sorted(set(text))
    assert task.alphabet == "".join(alphabet) and task.vocab_size == len(alphabet)
    ids = [alphabet.index(c) for c in text]
    train, val = task.split
    n_train = int(0.9 * len(text))
    for s in [0, 5, int(train[-1]), int(val[0]), int(val[-1])]:
        assert task.inputs[s].tolist() == ids[s : s + 10]
        assert task.targets[s].tolist() == ids[s + 1 : s + 11]
    assert int(train[-1]) + 10 == n_train - 1  # the last training target is in the train part
    assert int(val[0]) == n_train and int(val[-1]) + 10 == len(text) - 1
    assert len(train) == n_train - 10 and len(val) == len(text) - n_train - 10


def test_the_shipped_corpus_is_tiny_shakespeare():
    corpus = load_corpus("tinyshakespeare")
    assert len(corpus.text) == 1_115_394 and len(corpus.alphabet) == 65


def test_the_run_id_names_the_text_not_the_path(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("hello there, text " * 20)
    b.write_text("hello there, text " * 20)
    ra = RunSpec(**(BASE | {"corpus": str(a)}))
    assert ra.run_id == RunSpec(**(BASE | {"corpus": str(b)})).run_id
    b.write_text("hello there, text!" * 20)
    assert ra.run_id != RunSpec(**(BASE | {"corpus": str(b)})).run_id


# -- the model against torch.nn --------------------------------------------------------------
def stacked_and_plain(dropout=0.0, seed=0):
    model = GPT(vocab_size=11, seq_len=16, n_layers=3, d_model=32, n_heads=4)
    params = model.init(torch.Generator().manual_seed(seed))
    plain = PlainGPT(11, 16, 3, 32, 4, dropout).load_groklab(params)
    return model, params, plain


def test_forward_and_loss_equal_a_plain_torch_nn_gpt():
    model, params, plain = stacked_and_plain()
    tokens = torch.randint(0, 11, (5, 16), generator=torch.Generator().manual_seed(1))
    targets = torch.randint(0, 11, (5, 16), generator=torch.Generator().manual_seed(2))
    ours = model.forward({k: v[None] for k, v in params.items()}, tokens[None])
    theirs, loss = plain.eval()(tokens, targets)
    torch.testing.assert_close(ours[0], theirs, rtol=1e-5, atol=1e-5)
    per_window, _ = NextTokenPrediction()(ours, targets[None])
    torch.testing.assert_close(per_window.mean(), loss, rtol=1e-6, atol=1e-6)


def test_init_follows_nanogpt():
    model = GPT(vocab_size=65, seq_len=64, n_layers=4, d_model=256, n_heads=4)
    p = model.init(torch.Generator().manual_seed(0))
    assert abs(p["tok_emb"].std().item() - 0.02) < 1e-3
    assert abs(p["blocks.0.mlp.fc.weight"].std().item() - 0.02) < 1e-3
    for name in ("blocks.1.attn.proj.weight", "blocks.2.mlp.proj.weight"):
        assert abs(p[name].std().item() - 0.02 / math.sqrt(8)) < 5e-4
    assert torch.equal(p["blocks.3.ln2.weight"], torch.ones(256))
    assert "head.weight" not in p  # tied: the token embedding is the head


def test_flop_count_by_hand():
    model = GPT(vocab_size=65, seq_len=64, n_layers=4, d_model=128, n_heads=4)
    per_token = 4 * (2 * 128 * 384 + 2 * 128 * 128 + 2 * 128 * 512 * 2) + 2 * 128 * 65
    per_window = 64 * per_token + 4 * (2 * 64 * 64 * 128 * 2)
    assert model.forward_flops(3) == 3 * per_window
    assert model.train_step_flops(3) == 9 * per_window


# -- rates -----------------------------------------------------------------------------------
def spec_multiplier(kind, i, L, arg):
    """docs/protocol.md §5 written out."""
    if kind == "none":
        return 1.0
    if kind == "exponential":
        return arg**i
    if kind == "linear":
        return 1 - (1 - arg) * i / (L - 1)
    return arg + (1 - arg) * (1 + math.cos(math.pi * i / (L - 1))) / 2


def spec_schedule(t, warmup, total, floor):
    if t < warmup:
        return t / warmup
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))


@pytest.mark.parametrize("decay", ["none", "exp:0.8", "linear:0.1", "cosine:0.1"])
def test_every_parameter_rate_follows_the_spec(decay):
    _, settings = parse_lr_decay(decay)
    spec = RunSpec(**(BASE | settings | {"n_layers": 5, "steps": 40, "warmup": 10}))
    state = CohortState([spec])
    arg = spec.lr_depth_gamma if spec.lr_depth == "exponential" else spec.lr_depth_floor
    for t in (0, 3, 10, 25, 39):
        rates = state.policy(t)[0]
        for name, (a, b) in state.layout.offsets.items():
            depth = state.layout.infos[name].depth
            block = 0 if depth < 0 else min(depth, 4)  # embeddings: block 0; ln_f: the deepest
            want = 3e-3 * spec_multiplier(spec.lr_depth, block, 5, arg) * spec_schedule(
                t, 10, 40, 0.1)
            torch.testing.assert_close(rates[a:b], torch.full((b - a,), want), rtol=1e-5,
                                       atol=1e-12, msg=f"{name} at {t}")


def test_matrices_and_embeddings_decay_norms_do_not():
    state = CohortState([RunSpec(**BASE)])
    from groklab.optim.build import decay_columns

    wd = decay_columns([RunSpec(**BASE)], state.layout, state.params.flat)[0]
    for name, (a, b) in state.layout.offsets.items():
        want = 0.0 if ".ln" in name or name.startswith("ln_") else 0.1
        assert torch.all(wd[a:b] == want), name


def test_training_equals_torch_optim_adamw_with_clipping_per_run():
    """Two runs (different strategies and clip norms) trained as one cohort; each equals a
    plain GPT trained with torch.optim.AdamW (param groups at the protocol's rates, nanoGPT's decay
    rule) and clip_grad_norm_ on the same batches."""
    specs = [RunSpec(**(BASE | {"lr_depth": "exponential", "lr_depth_gamma": 0.5})),
             RunSpec(**(BASE | {"lr_depth": "cosine", "grad_clip": 0.05, "seed": 1}))]
    state = CohortState(specs)
    batches = []
    draw = state.train_rows
    state.train_rows = lambda: batches.append(draw()) or batches[-1]
    init = [state.params.run(i) for i in range(2)]
    for _ in range(8):
        state.step()
    for r, spec in enumerate(specs):
        plain = PlainGPT(state.model.vocab_size, 16, 3, 32, 4).load_groklab(init[r])
        arg = spec.lr_depth_gamma if spec.lr_depth == "exponential" else spec.lr_depth_floor
        groups = []
        for i, block in enumerate(plain.blocks):
            for n, p in block.named_parameters():
                groups.append({"params": [p], "mult": spec_multiplier(spec.lr_depth, i, 3, arg),
                               "weight_decay": 0.0 if n.startswith("ln") else 0.1})
        groups += [{"params": [plain.tok_emb.weight, plain.pos_emb.weight], "mult": 1.0,
                    "weight_decay": 0.1},
                   {"params": [plain.ln_f.weight], "mult": spec_multiplier(spec.lr_depth, 2, 3,
                                                                           arg),
                    "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=3e-3, betas=(0.9, 0.99), eps=1e-8)
        for t, rows in enumerate(batches):
            for g in opt.param_groups:
                g["lr"] = 3e-3 * g["mult"] * spec_schedule(t, 4, 12, 0.1)
            x, y = state.inputs[rows[r]], state.targets[rows[r]]
            _, loss = plain(x, y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(plain.parameters(), spec.grad_clip)
            opt.step()
        ours = state.params.run(r)
        torch.testing.assert_close(ours["tok_emb"], plain.tok_emb.weight, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(ours["blocks.2.mlp.fc.weight"], plain.blocks[2].fc.weight.t(),
                                   rtol=1e-4, atol=1e-6)
        assert torch.equal(plain.head.weight, plain.tok_emb.weight)  # still tied


# -- cohorts ---------------------------------------------------------------------------------
def test_a_cohort_equals_each_run_alone_with_dropout():
    specs = [RunSpec(**(BASE | {"dropout": 0.2, "lr_depth": "exponential"})),
             RunSpec(**(BASE | {"dropout": 0.0, "seed": 1, "lr_depth": "cosine"})),
             RunSpec(**(BASE | {"dropout": 0.1, "seed": 2, "lr": (1e-3,) * 3}))]
    together = train_cohort(specs, progress=False)
    for spec, curve in zip(specs, together, strict=True):
        alone = train_cohort([spec], progress=False)[0]
        got = [(r.train_loss, r.val_loss, r.val_acc) for r in curve]
        want = [(r.train_loss, r.val_loss, r.val_acc) for r in alone]
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-5, atol=1e-6)


def test_dropout_is_on_in_training_only():
    model, params, _ = stacked_and_plain()
    from groklab.models.base import RunRandom

    stacked = {k: v[None] for k, v in params.items()}
    tokens = torch.randint(0, 11, (1, 4, 16))
    rng = RunRandom([0], torch.device("cpu"), dropout=[0.5])
    a = model.forward(stacked, tokens, train=True, rng=rng)
    b = model.forward(stacked, tokens, train=False, rng=rng)
    c = model.forward(stacked, tokens)
    assert not torch.allclose(a, b) and torch.equal(b, c)


# -- sampling --------------------------------------------------------------------------------
def test_greedy_decoding_with_the_cache_equals_recomputing_every_step():
    model, params, plain = stacked_and_plain(seed=3)
    stacked = {k: v[None] for k, v in params.items()}
    prompt = torch.tensor([[1, 2, 3]])
    out, _ = model.generate(stacked, prompt, 40, top_k=1)  # past the context of 16
    seq = prompt[0].tolist()
    for _ in range(40):  # recompute from scratch on the window the cache holds
        n = len(seq)
        # full at 16 positions: rebuilt from the last 8 tokens, i.e. every 9 new tokens
        start = 0 if n <= 16 else 9 + 9 * ((n - 17) // 9)
        logits, _ = plain.eval()(torch.tensor([seq[start:]]))
        seq.append(int(logits[0, -1].argmax()))
    assert out[0].tolist() == seq


def test_top_k_and_temperature_sample_from_the_right_set():
    model, params, _ = stacked_and_plain(seed=4)
    stacked = {k: v[None] for k, v in params.items()}
    gen = torch.Generator().manual_seed(0)
    out, seconds = model.generate(stacked, torch.tensor([[0]]), 30, top_k=3, temperature=0.8,
                                  generators=[gen])
    assert out.shape == (1, 31) and seconds > 0
    again, _ = model.generate(stacked, torch.tensor([[0]]), 30, top_k=3, temperature=0.8,
                              generators=[torch.Generator().manual_seed(0)])
    assert torch.equal(out, again)


# -- end to end ------------------------------------------------------------------------------
def test_lm_learns_text_and_sample_uses_its_alphabet(tmp_path, capsys):
    out = tmp_path / "lm"
    args = ["lm", "--out", str(out), "--steps", "150", "--context", "32", "--n-layers", "2",
            "--d-model", "64", "--eval-every", "50", "--eval-batches", "4", "--lr", "3e-3",
            "--lr-decay", "none", "--lr-decay", "exp:0.8", "--no-progress"]
    assert main(args) == 0
    text = load_corpus("tinyshakespeare").text
    counts = Counter(text)
    unigram = -sum(c / len(text) * math.log(c / len(text)) for c in counts.values())
    with Store(out, create=False) as store:
        runs = store.runs()
        assert len(runs) == 2
        for r in runs:
            assert r["final_val_loss"] < unigram - 0.5, (r["final_val_loss"], unigram)
            texts = store.texts(r["id"])
            assert len(texts["sample"]) == 500 and set(texts["sample"]) <= set(counts)
            assert any(n == "gen_tokens_per_s" for _, n, _ in store.metrics(r["id"]))
    capsys.readouterr()
    assert main(["sample", str(out), runs[0]["id"], "--prompt", "ROMEO:", "--tokens", "50"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("ROMEO:") and set(printed.strip()) <= set(counts)
    assert main(["sample", str(out), runs[0]["id"], "--prompt", "€"]) == 2
    assert main(["lm", "--out", str(out), "--lr-decay", "exp:0.8", "--steps", "150",
                 "--context", "32", "--n-layers", "2", "--d-model", "64", "--eval-every", "50",
                 "--eval-batches", "4", "--lr", "3e-3", "--no-progress"]) == 0  # already done
    assert "0 run(s) trained" in capsys.readouterr().err
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "| exp:0.8 | 1 |" in report and "best val loss" in report and "### Samples" in report
    assert (out / "figures" / "groklab_run-loss.png").stat().st_size > 10_000  # in no study


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe\x00\x01 not utf-8", "is not UTF-8 text"),
    (b"", "is empty"),
    (b"too short for the context", "is too long for corpus"),
])
def test_bad_corpora_are_one_line_and_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "c.txt"
    path.write_bytes(content)
    out = tmp_path / "o"
    assert main(["lm", "--out", str(out), "--data", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_bad_strategies_and_mismatched_models_are_refused(tmp_path, capsys):
    out = tmp_path / "o"
    for bad in ("exp", "cos:0.1", "linear:x", "none:1"):
        assert main(["lm", "--out", str(out), "--lr-decay", bad]) == 2
    assert main(["run", "--out", str(out), "--model", "gpt"]) == 2
    assert "text task" in capsys.readouterr().err
    assert not out.exists()


def test_the_preset_is_the_cpu_size_with_four_strategies():
    study = preset("charlm-depth-decay")
    runs = study.expand()
    assert len(runs) == 12 and len({r.spec.cohort_key() for r in runs}) == 1
    cpu = lm_settings("cpu")
    for r in runs:
        for key, value in cpu.items():
            got = getattr(r.spec, key)
            assert (tuple(got) if key == "lr" else got) == value, key
    assert {r.spec.lr_depth for r in runs} == {"none", "exponential", "linear", "cosine"}


def test_the_objective_reads_every_position():
    out = torch.randn(2, 3, 5, 7)
    y = torch.randint(0, 7, (2, 3, 5))
    loss, metrics = NextTokenPrediction()(out, y)
    want = F.cross_entropy(out.reshape(-1, 7), y.reshape(-1), reduction="none").view(2, 3, 5)
    torch.testing.assert_close(loss, want.mean(2))
    assert torch.equal(metrics["acc"], (out.argmax(-1) == y).float().mean(2))
