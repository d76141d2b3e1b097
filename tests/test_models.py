"""MLP and LSTM against plain torch.nn implementations with the same weights; their
initialisation, groups, dropout and FLOP counts; the model registry."""

import math

import pytest
import torch

from groklab.engine import CohortState, train_cohort
from groklab.models import LSTM, MLP, build_model, model_names, model_settings
from groklab.spec import MODEL_FIELDS, RunSpec
from groklab.tasks import build_task

V, C, T = 13, 11, 4  # vocabulary (2 symbols + 11 elements), classes, sequence length


def tokens(R=2, B=5, seed=0):
    return torch.randint(0, V, (R, B, T), generator=torch.Generator().manual_seed(seed))


def stacked(model, R=2):
    per_run = [model.init(torch.Generator().manual_seed(r)) for r in range(R)]
    return {n: torch.stack([p[n] for p in per_run]) for n in per_run[0]}


def load_linear(layer, params, name, r):
    layer.weight.data.copy_(params[f"{name}.weight"][r].T)
    layer.bias.data.copy_(params[f"{name}.bias"][r])


@pytest.mark.parametrize("embedding, activation", [(True, "relu"), (True, "gelu"),
                                                   (False, "relu"), (False, "tanh")])
def test_mlp_equals_torch_nn(embedding, activation):
    model = MLP(V, C, T, n_layers=2, d_model=6, d_hidden=16, activation=activation,
                embedding=embedding)
    params = stacked(model)
    x = tokens()
    ours = model.forward(params, x)
    act = {"relu": torch.nn.ReLU(), "gelu": torch.nn.GELU(), "tanh": torch.nn.Tanh()}[activation]
    for r in range(2):
        width = T * 6 if embedding else T * V
        net = torch.nn.Sequential(torch.nn.Linear(width, 16), act, torch.nn.Linear(16, 16), act,
                                  torch.nn.Linear(16, C))
        for i, name in ((0, "layers.0"), (2, "layers.1"), (4, "head")):
            load_linear(net[i], params, name, r)
        if embedding:
            emb = torch.nn.Embedding(V, 6)
            emb.weight.data.copy_(params["tok_emb"][r])
            inp = emb(x[r]).reshape(5, -1)
        else:
            inp = torch.nn.functional.one_hot(x[r], V).float().reshape(5, -1)
        torch.testing.assert_close(ours[r], net(inp), rtol=1e-5, atol=1e-5)


def test_lstm_equals_torch_nn_lstm():
    model = LSTM(V, C, T, n_layers=2, d_model=6, d_hidden=8)
    params = stacked(model)
    x = tokens()
    ours = model.forward(params, x)
    for r in range(2):
        emb = torch.nn.Embedding(V, 6)
        emb.weight.data.copy_(params["tok_emb"][r])
        lstm = torch.nn.LSTM(6, 8, num_layers=2, batch_first=True)
        for i in range(2):
            for kind in ("weight_ih", "weight_hh"):
                getattr(lstm, f"{kind}_l{i}").data.copy_(params[f"layers.{i}.{kind}"][r].T)
            for kind in ("bias_ih", "bias_hh"):
                getattr(lstm, f"{kind}_l{i}").data.copy_(params[f"layers.{i}.{kind}"][r])
        head = torch.nn.Linear(8, C)
        load_linear(head, params, "head", r)
        out, _ = lstm(emb(x[r]))
        torch.testing.assert_close(ours[r], head(out[:, -1]), rtol=1e-5, atol=1e-5)


def test_initialisation_matches_torch_nn_defaults():
    g = torch.Generator().manual_seed(0)
    mlp = MLP(V, C, T, d_model=32, d_hidden=512).init(g)
    assert abs(float(mlp["tok_emb"].std()) - 1.0) < 0.05  # nn.Embedding: N(0, 1)
    for name, fan_in in (("layers.0", T * 32), ("layers.1", 512), ("head", 512)):
        bound = 1 / math.sqrt(fan_in)  # nn.Linear: U(±1/√fan_in) for weight and bias
        w = mlp[f"{name}.weight"]
        assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.95 * bound
        assert abs(float(w.std()) - bound / math.sqrt(3)) < 0.05 * bound
        assert float(mlp[f"{name}.bias"].abs().max()) <= bound
    one_hot = MLP(V, C, T, embedding=False).init(g)
    assert "tok_emb" not in one_hot
    assert float(one_hot["layers.0.weight"].abs().max()) <= 1 / math.sqrt(T * V)
    lstm = LSTM(V, C, T, d_model=32, d_hidden=64).init(g)
    bound = 1 / math.sqrt(64)  # nn.LSTM: every weight and bias U(±1/√H)
    for name, t in lstm.items():
        if name != "tok_emb":
            assert float(t.abs().max()) <= bound and float(t.abs().max()) > 0.9 * bound, name


def test_groups_apply_to_every_model_and_an_absent_embedding_is_valid():
    for kw in (dict(model="mlp"), dict(model="mlp", embedding=False), dict(model="lstm")):
        spec = RunSpec(task="x_plus_y", p=11, d_model=8, d_hidden=16, steps=4, batch_size=8,
                       eval_every=2, lr=(1e-4, 2e-3, 3e-3), **kw)
        state = CohortState([spec])
        groups = state.layout.groups
        leaf = "weight" if kw["model"] == "mlp" else "weight_ih"
        assert groups[f"layers.0.{leaf}"] == "lower" and groups["head.weight"] == "higher"
        assert groups[f"layers.1.{leaf}"] == "higher"
        assert ("tok_emb" in groups) == kw.get("embedding", True)
        base = state.policy.base()
        col = state.layout.offsets[f"layers.0.{leaf}"][0]
        assert float(base[0, col]) == pytest.approx(2e-3)
        curve = train_cohort([spec], progress=False)[0]
        assert len(curve) == 2 and all(math.isfinite(r.train_loss) for r in curve)


@pytest.mark.parametrize("model", ["mlp", "lstm"])
def test_dropout_only_while_training(model):
    spec = RunSpec(task="x_plus_y", p=11, d_model=8, d_hidden=16, model=model, dropout=0.5)
    state = CohortState([spec])
    x = state.inputs[state.data.train_idx[:, :8]]
    f = lambda train: state.model.forward(state.params.views, x, train=train,  # noqa: E731
                                          rng=state.rng)
    torch.testing.assert_close(f(False), f(False), rtol=0, atol=0)
    assert not torch.equal(f(True), f(True))
    assert not torch.equal(f(True), f(False))


def test_flop_counts_by_hand():
    mlp = MLP(V, C, T, n_layers=2, d_model=6, d_hidden=16)
    assert mlp.forward_flops(1) == 2 * (T * 6 * 16 + 16 * 16 + 16 * C)
    assert MLP(V, C, T, d_hidden=16, embedding=False).forward_flops(1) == 2 * (16 * 16 + 16 * C)
    lstm = LSTM(V, C, T, n_layers=2, d_model=6, d_hidden=8)
    layer0 = T * 6 * 32 + (T - 1) * 8 * 32
    layer1 = T * 8 * 32 + (T - 1) * 8 * 32
    assert lstm.forward_flops(3) == 3 * 2 * (layer0 + layer1 + 8 * C)
    assert lstm.train_step_flops(3) == 3 * lstm.forward_flops(3)


def test_registry_names_every_model_and_its_settings_are_run_settings():
    assert model_names() == ["gpt", "lstm", "mlp", "transformer"]
    for name in model_names():
        assert model_settings(name) <= set(RunSpec.model_fields), name
        assert {"n_layers", "d_model"} <= model_settings(name) <= set(MODEL_FIELDS) | {"semantics"}
    with pytest.raises(ValueError, match="unknown model 'cnn'; known models: gpt, lstm, mlp"):
        model_settings("cnn")
    with pytest.raises(ValueError, match="unknown model 'cnn'; known models: gpt, lstm, mlp"):
        RunSpec(model="cnn")


def test_a_model_ignores_the_shape_settings_it_does_not_read():
    for name in ("transformer", "mlp", "lstm"):
        spec = RunSpec(task="x_plus_y", p=11, model=name)
        unread = set(MODEL_FIELDS) - model_settings(name)
        assert unread <= spec.ignored()
        assert not (model_settings(name) - {"max_len", "d_ff"}) & spec.ignored()


@pytest.mark.parametrize("kw", [dict(model="transformer", d_ff=24, semantics=1),
                                dict(model="mlp", embedding=False, activation="tanh"),
                                dict(model="lstm"),
                                dict(model="gpt", task="text", context=8)])
def test_build_model_reads_the_spec_and_completes_the_protocol(kw):
    spec = RunSpec(**(dict(task="x_plus_y", p=11, n_layers=2, d_model=8, n_heads=2,
                           d_hidden=16) | kw))
    task = build_task(spec.task, **spec.task_args())
    model = build_model(spec, task)
    assert type(model).__name__.lower() == spec.model
    assert model.n_blocks == 2 and model.d_model == 8
    info = model.param_info()
    pair = model.embedding_pair()
    if spec.model == "mlp":
        assert pair is None  # one-hot inputs: no embedding table
    else:
        assert pair is not None and pair[0] in info and pair[1] in info
    assert model.train_step_flops(4) == 3 * model.forward_flops(4) > 0
    if spec.model == "transformer":
        assert model.d_ff == 24 and model.legacy_init
