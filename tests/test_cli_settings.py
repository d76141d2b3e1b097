"""Settings on the command line (issue 21, part A): a setting the runs ignore is an error
naming it and why; errors of the settings model name the flag and its format; repeated
rates train once; a parent must exist; `run` takes the shape flags `lm` takes; typos get
"did you mean"."""

import pytest
from conftest import groklab, results_json, tiny_args
from pydantic import ValidationError

from groklab.cli.settings import describe
from groklab.spec import RunSpec

ARGS = tiny_args("d_model", "n_heads")


def _refused(tmp_path, *args: str, command: str = "run") -> str:
    """The one error line of a refused command; nothing was written."""
    out = tmp_path / "never"
    proc = groklab(command, "--out", str(out), *args, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("groklab: error: ")
    assert not out.exists()
    return lines[0].removeprefix("groklab: error: ")


# -- settings that mean nothing ---------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--momentum", "0.9"], "--momentum means nothing for these runs: ignored by optimizer "
                            "'adamw'"),
    (["--no-embedding"], "--no-embedding means nothing for these runs: ignored by model "
                         "'transformer'"),
    (["--task", "permutation", "--p", "11"], "--p means nothing for these runs: ignored by "
                                             "task 'permutation'"),
    (["--model", "mlp", "--n-heads", "2"], "--n-heads means nothing for these runs: ignored "
                                           "by model 'mlp'"),
    (["--optimizer", "sgd", "--set", "beta2=0.9"], "--set beta2 means nothing for these "
                                                   "runs: ignored by optimizer 'sgd'"),
    (["--grad-filter", "ema", "--set", "filter_window=5"], "--set filter_window means "
                                                           "nothing for these runs: ignored "
                                                           "by grad_filter 'ema'"),
    (["--set", "min_lr_ratio=0.2"], "ignored by lr_schedule 'constant'"),
    (["--set", "stop_patience=3"], "ignored without stop_val_acc"),
    (["--set", "muon_momentum=0.9"], "--set muon_momentum means nothing for these runs: "
                                     "ignored by optimizer 'adamw'"),
    (["--model", "mlp", "--no-embedding", "--d-model", "64"], "--d-model means nothing"),
])
def test_a_setting_the_runs_ignore_is_an_error_naming_it_and_why(tmp_path, args, message):
    assert message in _refused(tmp_path, *ARGS, *args)


def test_every_reason_the_spec_gives_reaches_the_command(tmp_path, monkeypatch):
    """A rule added to RunSpec.ignored_reasons (another engineer's new setting) is refused
    with no change to the command."""
    real = RunSpec.ignored_reasons
    monkeypatch.setattr(RunSpec, "ignored_reasons",
                        lambda self: real(self) | {"warmup": "ignored by a new rule"})
    assert _refused(tmp_path, *ARGS, "--warmup", "3") == (
        "--warmup means nothing for these runs: ignored by a new rule")


def test_settings_the_runs_use_or_that_equal_unset_are_accepted(tmp_path):
    out = tmp_path / "ok"
    # x_plus_y sequences are 4 tokens: --max-len 4 is what leaving it unset gives; --d-ff 64
    # is 4 × --d-model 16, the default; SGD uses --momentum
    groklab("run", "--out", str(out), *ARGS, "--max-len", "4", "--d-model", "16",
            "--n-heads", "2", "--d-ff", "64", "--optimizer", "sgd", "--momentum", "0.9")
    (run,) = results_json(out)
    assert run["status"] == "finished" and run["momentum"] == 0.9 and run["d_model"] == 16


def test_a_study_refuses_only_what_every_run_ignores(tmp_path):
    study = tmp_path / "mixed.toml"
    study.write_text('name = "mixed"\n[settings]\np = 5\nsteps = 2\nbatch_size = 8\n'
                     'd_model = 16\nn_heads = 2\n'
                     '[variants.adamw]\noptimizer = "adamw"\n'
                     '[variants.sgd]\noptimizer = "sgd"\nmomentum = 0.5\n')
    message = _refused(tmp_path, str(study), "--set", "filter_alpha=0.9", command="study")
    assert message == ("--set filter_alpha means nothing for every run of the study: ignored "
                       "by grad_filter 'none'")
    out = tmp_path / "ok"  # momentum: the SGD variant uses it, AdamW ignores it
    groklab("study", str(study), "--out", str(out), "--set", "momentum=0.9", "--no-progress")
    runs = {r["optimizer"]: r for r in results_json(out)}
    assert sorted(runs) == ["adamw", "sgd"] and runs["sgd"]["momentum"] == 0.9
    study.write_text(study.read_text().replace("[settings]\n", "[settings]\nk = 3\n"))
    assert _refused(tmp_path, str(study), command="study") == (
        f"{study}: settings.k means nothing for every run of the study: ignored by task "
        "'x_plus_y'")


# -- errors name the flag and its format ------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--grad-filter", "ema:2"], "--grad-filter expects none, ema:ALPHA:LAMBDA or "
                                 "ma:WINDOW:LAMBDA; ALPHA must be in [0, 1), got 2.0"),
    (["--grad-filter", "ma:0"], "--grad-filter expects none, ema:ALPHA:LAMBDA or "
                                "ma:WINDOW:LAMBDA; WINDOW must be at least 1, got 0"),
    (["--train-fraction", "0"], "--train-fraction must be in (0, 1), got 0.0"),
    (["--set", "grad_clip=0"], "--set grad_clip must be greater than 0, got 0"),
    (["--precision", "fp8"], "--precision must be one of fp32, bf16, got 'fp8'"),
    (["--optimizer", "adamm"], "--optimizer must be one of adamw, adam, sgd, muon, got "
                               "'adamm' (did you mean 'adam' or 'adamw'?)"),
    (["--d-model", "30", "--n-heads", "4"], "--d-model 30 is not divisible by --n-heads 4"),
    (["--n-layers", "0"], "--n-layers must be at least 1, got 0"),
])
def test_run_errors_name_the_flag_and_its_format(tmp_path, args, message):
    assert _refused(tmp_path, *args) == message


@pytest.mark.parametrize("args, message", [
    (["--lr-decay", "exp:-1"], "--lr-decay expects none, exp:GAMMA, linear:FLOOR or "
                               "cosine:FLOOR; GAMMA must be greater than 0, got -1.0"),
    (["--dropout", "1"], "--dropout must be in [0, 1), got 1.0"),
    (["--context", "0"], "--context must be at least 1, got 0"),
])
def test_lm_errors_name_the_flag_and_its_format(tmp_path, args, message):
    assert _refused(tmp_path, *args, command="lm") == message


def test_every_bounded_setting_is_worded_by_its_flag_and_bounds():
    """Every numeric setting with bounds, given out of them, reads '<flag> must be ...'."""
    for name, info in RunSpec.model_fields.items():
        lows = [getattr(m, a) for m in info.metadata for a in ("ge", "gt")
                if getattr(m, a, None) is not None]
        if not lows:
            continue
        with pytest.raises(ValidationError) as caught:
            RunSpec(**{name: lows[0] - 1})
        message = describe(caught.value, {name: "--the-flag"})
        assert message.startswith("--the-flag must be "), (name, message)
        assert name not in message, (name, message)


# -- repeated rates, parents, shape flags -----------------------------------------------------


@pytest.mark.parametrize("first, second", [("baseline", "run0"), ("layerwise", "run4")])
def test_two_lr_names_for_the_same_rates_train_once_and_say_so(tmp_path, first, second):
    out = tmp_path / "o"
    proc = groklab("run", "--out", str(out), *ARGS, "--lr", first, "--lr", second,
                   "--seeds", "2")
    assert (f"--lr {second} gives the same runs as --lr {first}: 2 run(s) train once, "
            f"labelled '{first}'") in proc.stderr
    assert "2 run(s) trained here" in proc.stderr
    assert [r["lr_name"] for r in results_json(out)] == [first, first]


def test_a_parent_must_be_in_the_store_or_planned(tmp_path):
    unknown = "0123456789abcdef"
    assert _refused(tmp_path, *ARGS, "--set", f"init_from={unknown}") == (
        f"--set init_from {unknown}: no such run in {tmp_path / 'never'} (it holds no store) "
        "and none of this command's runs (see groklab results)")
    out = tmp_path / "o"
    groklab("run", "--out", str(out), *ARGS)
    (parent,) = results_json(out)
    proc = groklab("run", "--out", str(out), *ARGS, "--set", f"init_from={unknown}",
                   check=False)
    assert proc.returncode == 2 and f"no such run in {out}'s store" in proc.stderr
    assert results_json(out) == [parent]  # nothing written
    groklab("run", "--out", str(out), *ARGS, "--set", f"init_from={parent['id']}")
    assert sorted(str(r["init_from"]) for r in results_json(out)) == [parent["id"], "None"]
    assert "no such run" in _refused(tmp_path, "paper-ablation", "--steps", "2", "--set",
                                     f"init_from={unknown}", command="study")


def test_run_takes_the_shape_flags_lm_takes_from_one_definition(tmp_path):
    from test_cli_start import _command

    from groklab.spec import MODEL_FIELDS

    run, lm = _command("run"), _command("lm")
    by_name = {p.name: p for p in run.params}
    for param in lm.params:
        if param.name in MODEL_FIELDS:
            assert by_name[param.name].opts == param.opts
            assert by_name[param.name].help == param.help  # one definition, cli/shape.py
    out = tmp_path / "o"
    groklab("run", "--out", str(out), *ARGS, "--n-layers", "1", "--d-model", "32",
            "--n-heads", "2", "--d-ff", "48")
    (r,) = results_json(out)
    assert (r["n_layers"], r["d_model"], r["n_heads"], r["d_ff"]) == (1, 32, 2, 48)
    groklab("run", "--out", str(out), *ARGS, "--model", "mlp", "--d-hidden", "24",
            "--activation", "gelu", "--n-layers", "1")
    assert {(r["model"], r["d_hidden"], r["activation"]) for r in results_json(out)} >= {
        ("mlp", 24, "gelu")}


# -- did you mean -----------------------------------------------------------------------------


@pytest.mark.parametrize("argv, hint", [
    (["rnu"], "Did you mean 'run'?"),
    (["run", "--out", "never", "--stpes", "3"], "--steps"),
    (["run", "--out", "never", "--task", "x_plus_z"], "(did you mean 'x_plus_y'"),
    (["run", "--out", "never", "--model", "mpl"], "(did you mean 'mlp'?)"),
    (["run", "--out", "never", "--optimizer", "sdg"], "(did you mean 'sgd'?)"),
    (["run", "--out", "never", "--lr", "layerwsie"], "(did you mean 'layerwise'?)"),
    (["run", "--out", "never", "--set", "lr_depth_gama=1"], "(did you mean 'lr_depth_gamma'"),
    (["run", "--out", "never", "--device", "cdua"], "(did you mean 'cuda'?)"),
    (["run", "--out", "never", "--executor", "rey"], "(did you mean 'ray'?)"),
    (["study", "paper-tabel1", "--out", "never"], "(did you mean 'paper-table1'"),
    (["study", "paper-table1", "--tasks", "x_plus_z", "--out", "never"],
     "(did you mean 'x_plus_y'"),
    (["run", "--out", "never", "--recipe", "acceleration-fsat"], "(did you mean"),
    (["lm", "--out", "never", "--size", "cpy"], "(did you mean 'cpu'?)"),
])
def test_typos_get_did_you_mean(tmp_path, argv, hint):
    proc = groklab(*argv, check=False, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and hint in lines[0], proc.stderr
    assert not (tmp_path / "never").exists()
