"""Progress measures (docs/protocol.md §4.1): the Fourier basis against torch.fft, spectra and
key frequencies of known embeddings, restricted and excluded losses of hand-built logits and
of a hand-built network, untrained spectra, recording that never changes a run, measures from
saved weights, `groklab analyze` and the report section."""

import json
import math

import pandas as pd
import pytest
import torch
from conftest import TINY, groklab
from pydantic import ValidationError

from groklab.engine import run_specs, train_cohort
from groklab.engine.measures import measure_saved
from groklab.measures import (
    FourierScope,
    MeasureError,
    fourier_basis,
    fourier_measures,
    fourier_scope,
    grid_logits,
    key_frequencies,
    participation_ratio,
    restricted_excluded,
    spectrum,
)
from groklab.measures.fourier import masked_cross_entropy
from groklab.models import MLP, Transformer, build_model
from groklab.report.measures import phase_steps
from groklab.spec import RunSpec
from groklab.store import Store
from groklab.tasks import build_task

CORE = ("train_loss", "train_acc", "val_loss", "val_acc")


def core(curve):
    return torch.tensor([[getattr(r, k) for k in CORE] for r in curve], dtype=torch.float64)


def fourier_table(p: int, sign: int, terms: dict[int, tuple[float, float]]) -> torch.Tensor:
    """Logits ``[1, p², p]``: Σ_w a_w cos(2πw(x + sign·y − z)/p + φ_w), pair index x·p + y."""
    x = torch.arange(p).repeat_interleave(p)[:, None].double()
    y = torch.arange(p).repeat(p)[:, None].double()
    z = torch.arange(p)[None, :].double()
    out = torch.zeros(p * p, p, dtype=torch.float64)
    for w, (a, phase) in terms.items():
        out += a * torch.cos(2 * math.pi * w * (x + sign * y - z) / p + phase)
    return out[None].float()


# -- the basis and the spectrum --------------------------------------------------------------
@pytest.mark.parametrize("p", [7, 10, 11, 97])
def test_fourier_basis_is_orthonormal(p):
    b = fourier_basis(p, dtype=torch.float64)
    torch.testing.assert_close(b @ b.T, torch.eye(p, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.allclose(b[0], torch.full((p,), p ** -0.5, dtype=torch.float64))


@pytest.mark.parametrize("p", [12, 13])
def test_projections_and_spectrum_match_a_direct_dft(p):
    v = torch.randn(p, 5, generator=torch.Generator().manual_seed(p), dtype=torch.float64)
    coefficients = fourier_basis(p, dtype=torch.float64) @ v
    dft = torch.fft.rfft(v, dim=0)  # F_k = Σ_x v_x e^{-2πikx/p}
    expected = [dft[0].real / math.sqrt(p)]
    for k in range(1, p // 2 + 1):
        if 2 * k == p:
            expected.append(dft[k].real / math.sqrt(p))
        else:
            expected += [dft[k].real * math.sqrt(2 / p), -dft[k].imag * math.sqrt(2 / p)]
    torch.testing.assert_close(coefficients, torch.stack(expected), rtol=0, atol=1e-12)
    energy = dft.abs().pow(2).sum(1) / p
    energy[1:(p + 1) // 2] *= 2  # k and p − k together; not the constant nor k = p/2
    torch.testing.assert_close(spectrum(v), energy.sqrt(), rtol=0, atol=1e-12)


def known_embedding(p: int, width: int = 8) -> torch.Tensor:
    """Residue x -> 3·cos(2π·4x/p) e_0 + 2·sin(2π·9x/p + 0.3) e_5 + 1.5 (all coordinates)."""
    x = torch.arange(p).double()
    e = torch.full((p, width), 1.5, dtype=torch.float64)
    e[:, 0] += 3 * torch.cos(2 * math.pi * 4 * x / p)
    e[:, 5] += 2 * torch.sin(2 * math.pi * 9 * x / p + 0.3)
    return e


def test_the_spectrum_of_known_cosines_finds_exactly_their_frequencies():
    p = 23
    norms = spectrum(known_embedding(p))
    assert key_frequencies(norms) == [4, 9]
    assert key_frequencies(norms, share=0.6) == [4]  # 9 p/2 of 13 p/2: 69 % of the norm²
    torch.testing.assert_close(norms[[4, 9]], torch.tensor([3.0, 2.0]).double() * math.sqrt(p / 2))
    assert norms[0] == pytest.approx(1.5 * math.sqrt(p * 8))
    assert float(norms[[k for k in range(12) if k not in (0, 4, 9)]].max()) < 1e-12
    assert float(participation_ratio(norms)) == pytest.approx(13**2 / (9**2 + 4**2))


def test_participation_ratio_runs_from_one_to_every_frequency():
    one = torch.zeros(49)
    one[7] = 2.0
    assert float(participation_ratio(one)) == pytest.approx(1.0)
    assert float(participation_ratio(torch.ones(49))) == pytest.approx(48.0)
    assert float(participation_ratio(torch.zeros(49))) == 0.0
    assert key_frequencies(torch.zeros(49)) == []


@pytest.mark.parametrize("model", ["transformer", "mlp_one_hot"])
def test_an_untrained_networks_spectrum_is_not_sparse(model):
    p = 97
    if model == "transformer":
        net = Transformer(vocab_size=p + 2, n_classes=p, seq_len=4)
    else:
        net = MLP(vocab_size=p + 2, n_classes=p, seq_len=4, embedding=False)
    params = {n: t[None] for n, t in net.init(torch.Generator().manual_seed(0)).items()}
    scope = FourierScope(p, 1)
    norms = spectrum(net.input_vectors(params, scope.residue_tokens(), scope.positions))[0]
    uniform = participation_ratio(torch.ones(p // 2 + 1))
    assert float(participation_ratio(norms)) > 0.95 * float(uniform)  # 48 for p = 97
    assert len(key_frequencies(norms)) > 0.8 * 48


# -- restricted and excluded loss ------------------------------------------------------------
@pytest.mark.parametrize("sign", [1, -1])
def test_logits_made_of_key_frequencies_restrict_to_themselves(sign):
    p = 13
    logits = 3 * fourier_table(p, sign, {3: (4.0, 0.0), 5: (2.5, 0.7)})
    labels = (torch.arange(p).repeat_interleave(p) + sign * torch.arange(p).repeat(p)) % p
    train = torch.rand(1, p * p, generator=torch.Generator().manual_seed(1)) < 0.5
    key = torch.zeros(1, p // 2 + 1, dtype=torch.bool)
    key[0, [3, 5]] = True
    restricted, excluded = restricted_excluded(logits, key, sign)
    torch.testing.assert_close(restricted, logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(excluded, torch.zeros_like(logits), rtol=0, atol=1e-4)
    full = masked_cross_entropy(logits, labels, train)
    assert float(full) < 0.05
    assert float(masked_cross_entropy(restricted, labels, train)) == pytest.approx(float(full),
                                                                                   abs=1e-5)
    assert float(masked_cross_entropy(excluded, labels, train)) == pytest.approx(math.log(p),
                                                                                 abs=1e-5)
    only_3 = key.clone()
    only_3[0, 5] = False  # a key frequency left out: restricted loss rises
    part, _ = restricted_excluded(logits, only_3, sign)
    assert float(masked_cross_entropy(part, labels, train)) > float(full) + 0.1


def test_the_components_are_nandas_cos_and_sin_of_x_plus_y():
    """helpers.get_component_cos_xpy / get_component_sin_xpy of Nanda et al.'s code:
    directions (cos x cos y − sin x sin y)/√2 and (sin x cos y + cos x sin y)/√2 built from
    the 1-D basis, every output class projected separately; plus the bias correction."""
    p = 13
    b = fourier_basis(p, dtype=torch.float64)
    logits = torch.randn(1, p * p, p, generator=torch.Generator().manual_seed(2),
                         dtype=torch.float64)

    def term(i, j):
        return (b[i][:, None] * b[j][None, :]).flatten()

    expected = logits.mean(1, keepdim=True).clone()  # Nanda's bias correction
    for w in (2, 6):
        cos_xpy = (term(2 * w - 1, 2 * w - 1) - term(2 * w, 2 * w)) / math.sqrt(2)
        sin_xpy = (term(2 * w, 2 * w - 1) + term(2 * w - 1, 2 * w)) / math.sqrt(2)
        for d in (cos_xpy, sin_xpy):
            expected = expected + d[None, :, None] * (d[None, :, None] * logits).sum(1, True)
    key = torch.zeros(1, p // 2 + 1, dtype=torch.bool)
    key[0, [2, 6]] = True
    restricted, excluded = restricted_excluded(logits, key, 1)
    torch.testing.assert_close(restricted, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(excluded, logits - expected + logits.mean(1, keepdim=True),
                               rtol=0, atol=1e-10)


def test_even_p_uses_the_cosine_alone_at_half_the_modulus():
    p = 12
    logits = fourier_table(p, 1, {6: (5.0, 0.0), 2: (1.0, 0.4)}).double()
    key = torch.zeros(1, p // 2 + 1, dtype=torch.bool)
    key[0, [2, 6]] = True
    restricted, excluded = restricted_excluded(logits, key, 1)
    torch.testing.assert_close(restricted, logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(excluded, torch.zeros_like(logits), rtol=0, atol=1e-5)


def lookup_mlp(p: int, table: torch.Tensor) -> tuple[MLP, dict[str, torch.Tensor]]:
    """A one-hot MLP whose logits are ``table`` ``[p², p]`` exactly: hidden unit (a, b) is
    relu(1[x = a] + 1[y = b] − 1), the head reads the table's row a·p + b."""
    net = MLP(vocab_size=p + 2, n_classes=p, seq_len=4, n_layers=1, d_hidden=p * p,
              embedding=False)
    V = p + 2
    w0 = torch.zeros(4 * V, p * p)
    for a in range(p):
        w0[0 * V + a + 2, a * p:(a + 1) * p] = 1.0  # x = a feeds the units (a, ·)
        w0[2 * V + a + 2, a::p] = 1.0  # y = a feeds the units (·, a)
    params = {"layers.0.weight": w0, "layers.0.bias": -torch.ones(p * p),
              "head.weight": table.clone(), "head.bias": torch.zeros(p)}
    return net, {n: t[None] for n, t in params.items()}


def test_a_hand_built_network_of_fourier_logits_has_restricted_loss_equal_to_its_loss():
    p = 11
    table = 3 * fourier_table(p, 1, {2: (4.0, 0.0), 5: (3.0, 0.0)})[0]
    net, params = lookup_mlp(p, table)
    scope = FourierScope(p, 1)
    torch.testing.assert_close(grid_logits(net, params, scope, 50)[0], table, rtol=0, atol=1e-5)
    train = torch.zeros(1, p * p, dtype=torch.bool)
    train[0, ::2] = True
    for key in (None, [2, 5]):  # the logits' own key frequencies are exactly 2 and 5
        out = fourier_measures(net, params, scope, train, chunk=50, key=key)
        assert float(out["logit_key_count"]) == 2
        assert float(out["full_loss"]) < 0.01
        assert float(out["restricted_loss"]) == pytest.approx(float(out["full_loss"]), abs=1e-5)
        assert float(out["excluded_loss"]) == pytest.approx(math.log(p), abs=1e-4)


def test_the_spectrum_reads_each_models_residue_vectors():
    p = 23
    net = Transformer(vocab_size=p + 2, n_classes=p, seq_len=4, d_model=8, n_heads=2, d_ff=16)
    params = {n: t[None] for n, t in net.init(torch.Generator().manual_seed(0)).items()}
    params["tok_emb"][0, 2:] = known_embedding(p).float()
    scope = FourierScope(p, 1)
    out = fourier_measures(net, params, scope, torch.ones(1, p * p, dtype=torch.bool), chunk=64)
    assert float(out["embedding_key_count"]) == 2
    assert out["embedding_freq_4"].item() == pytest.approx(3 * math.sqrt(p / 2), rel=1e-5)
    one_hot = MLP(vocab_size=p + 2, n_classes=p, seq_len=4, d_hidden=8, embedding=False)
    w = torch.zeros(1, 4 * (p + 2), 8)
    w[0, 2 * (p + 2) + 2:3 * (p + 2)] = known_embedding(p).float()  # y's rows only
    vectors = one_hot.input_vectors({"layers.0.weight": w}, scope.residue_tokens(), (0, 2))
    assert vectors.shape == (1, p, 16)
    assert key_frequencies(spectrum(vectors)[0]) == [4, 9]


@pytest.mark.parametrize("kw", [dict(), dict(model="mlp"), dict(model="mlp", embedding=False),
                                dict(model="lstm"), dict(model="gpt", task="text", context=8)])
def test_every_model_gives_its_input_vectors(kw):
    spec = RunSpec(**(dict(task="x_plus_y", p=11, d_model=8, n_heads=2, d_hidden=16) | kw))
    net = build_model(spec, build_task(spec.task, **spec.task_args()))
    params = {n: t[None] for n, t in net.init(torch.Generator().manual_seed(0)).items()}
    tokens = torch.tensor([2, 5, 7])
    vectors = net.input_vectors(params, tokens, (0, 2))
    if "tok_emb" in params:
        assert torch.equal(vectors[0], params["tok_emb"][0, tokens])
    else:  # one-hot: the first layer's rows of each token at positions 0 and 2
        w0, V = params["layers.0.weight"][0], 13
        assert torch.equal(vectors[0], torch.cat([w0[tokens], w0[tokens + 2 * V]], 1))


# -- scope and settings ----------------------------------------------------------------------
@pytest.mark.parametrize("kw, why", [
    (dict(task="x_div_y"), "discrete logarithms"), (dict(task="permutation"), "not abelian"),
    (dict(task="x2_plus_y2"), "polynomial"), (dict(task="sum", operands=3), "2 operands")])
def test_fourier_measures_out_of_scope_say_why(kw, why):
    with pytest.raises(ValidationError, match=why):
        RunSpec(measures="fourier", **kw)
    with pytest.raises(MeasureError, match=why):
        fourier_scope(kw["task"], kw | {"p": 11})
    assert RunSpec(measures="norms", **kw).measures == "norms"  # weight norms: every task


def test_measures_off_leave_ids_alone_and_every_is_ignored_when_off():
    assert RunSpec(measures="none", measures_every=3).run_id == RunSpec().run_id
    assert RunSpec(measures="norms").run_id != RunSpec().run_id
    assert RunSpec(measures="norms", measures_every=3).run_id != RunSpec(measures="norms").run_id
    a, b = RunSpec(measures="fourier"), RunSpec(measures="none", seed=1)
    assert a.cohort_key() == b.cohort_key()  # per run: one cohort may mix them


def test_the_grid_is_the_tasks_table():
    for task, sign in (("x_plus_y", 1), ("x_minus_y", -1)):
        t = build_task(task, p=7)
        tokens, labels = FourierScope(7, sign).grid()
        assert torch.equal(tokens, t.inputs) and torch.equal(labels, t.targets)


# -- recording never changes a run -----------------------------------------------------------
def test_curves_are_the_same_with_measures_on_and_off():
    off = RunSpec(**TINY, dropout=0.2, measures="none")
    on = RunSpec(**TINY, dropout=0.2, measures="fourier", measures_every=1)
    curve_off = train_cohort([off], progress=False)[0]
    curve_on = train_cohort([on], progress=False)[0]
    torch.testing.assert_close(core(curve_on), core(curve_off), rtol=0, atol=0)
    assert all(not r.extra for r in curve_off)
    assert all("restricted_loss" in r.extra for r in curve_on)


def test_a_mixed_one_hot_cohort_records_each_run_as_alone():
    base = TINY | dict(model="mlp", embedding=False, d_hidden=32, steps=16)
    specs = [RunSpec(**base, measures="fourier", measures_every=2),
             RunSpec(**base, seed=1, dropout=0.2),
             RunSpec(**base, seed=2, measures="norms", measures_every=1, train_fraction=0.3),
             RunSpec(**base, seed=3, measures="fourier", measures_every=1, dropout=0.1),
             RunSpec(**base, seed=4, measures="fourier", stop_val_acc=0.0, stop_patience=2)]
    together = train_cohort(specs, progress=False)  # the last run retires at step 8
    for s, curve in zip(specs, together, strict=True):
        alone = train_cohort([s], progress=False)[0]
        torch.testing.assert_close(core(curve), core(alone), rtol=1e-5, atol=1e-5)
        assert [sorted(r.extra) for r in curve] == [sorted(r.extra) for r in alone]
        for r, q in zip(curve, alone, strict=True):
            for k, v in r.extra.items():
                assert v == pytest.approx(q.extra[k], rel=1e-4, abs=1e-5), (s.seed, r.step, k)
    steps = [[r.step for r in c if r.extra] for c in together]
    # the first evaluation, every N-th, the last (a retired run's last is not measured)
    assert steps == [[4, 8, 16], [], [4, 8, 12, 16], [4, 8, 12, 16], [4]]
    assert "restricted_loss" not in together[2][0].extra  # norms only


# -- afterwards, the command and the report --------------------------------------------------
def test_measures_from_saved_weights_equal_those_recorded_last(tmp_path):
    spec = RunSpec(**TINY, measures="fourier", train_fraction=0.4)
    run_specs([spec], tmp_path, progress=False)
    with Store(tmp_path, create=False) as store:
        last = store.curve(spec.run_id)[-1].extra
    saved = measure_saved(tmp_path, spec.run_id)
    assert saved.scope == FourierScope(11, 1)
    assert set(saved.values) == set(last)
    for name, value in saved.values.items():
        assert value == pytest.approx(last[name], rel=1e-4, abs=1e-6), name


def test_phase_steps_read_the_recorded_measures():
    restricted = [(10, 4.0), (20, 4.2), (30, 3.9), (40, 4.3), (50, 1.0), (60, 0.1)]
    excluded = [(10, 0.1), (30, 2.0), (60, 5.0), (70, 4.0)]
    rows = [(s, "restricted_loss", v) for s, v in restricted]
    rows += [(s, "excluded_loss", v) for s, v in excluded]
    metrics = pd.DataFrame(rows, columns=["step", "name", "value"])
    run = {"step_train_acc_99": 20, "step_val_acc_99": None}
    assert phase_steps(pd.DataFrame(), metrics, run) == {
        "memorised": 20, "restricted_below": 50, "excluded_peak": 60, "val_acc_99": None}


def test_analyze_writes_a_finished_runs_spectra_measures_and_numbers(tmp_path):
    fourier = RunSpec(**TINY, measures="fourier", measures_every=1)
    div = RunSpec(**(TINY | dict(task="x_div_y")), measures="norms")
    run_specs([fourier, div], tmp_path, progress=False)
    rid = fourier.run_id
    done = groklab("analyze", str(tmp_path), rid[:6])
    assert "embedding: key frequencies" in done.stdout
    assert "logits along cos/sin(w(x ± y)): key frequencies" in done.stdout
    assert "restricted loss below" in done.stdout
    folder = tmp_path / "analysis"
    for suffix in ("-spectrum.png", "-measures.png", ".json"):
        assert (folder / f"{rid}{suffix}").stat().st_size > 0
    summary = json.loads((folder / f"{rid}.json").read_text())
    assert len(summary["spectra"]["embedding"]["norms"]) == 6
    assert summary["spectra"]["logit"]["key_frequencies"]
    refused = groklab("analyze", str(tmp_path), div.run_id, check=False)
    assert refused.returncode == 2 and "discrete logarithms" in refused.stderr
    assert not (folder / f"{div.run_id}.json").exists()


RUN = ("run", "--p", "11", "--steps", "12", "--batch-size", "16", "--eval-every", "4",
       "--warmup", "2", "--set", "d_model=16", "--set", "n_heads=2", "--no-progress")


@pytest.mark.slow
def test_measures_from_the_command_line_to_the_report(tmp_path):
    out = tmp_path / "out"
    groklab(*RUN, "--out", str(out), "--measures", "fourier", "--measures-every", "1")
    groklab(*RUN, "--out", str(out), "--task", "x_div_y", "--measures", "norms")
    rid = RunSpec(**TINY, measures="fourier", measures_every=1).run_id
    every = groklab("analyze", str(out))  # every finished run it applies to: x_div_y skipped
    assert "skipped runs of x_div_y" in every.stderr and rid in every.stdout
    assert (out / "analysis" / f"{rid}-spectrum.png").is_file()
    groklab("report", str(out))
    md = (out / "report.md").read_text()
    assert "### Progress measures" in md and "Key frequencies per run" in md
    assert len(list((out / "figures").glob("*-x_plus_y-measures.png"))) == 1
    assert len(list((out / "figures").glob("*-x_div_y-measures.png"))) == 1  # weight norm only
    assert "embedding_freq_" not in md and "logit_freq_" not in md
