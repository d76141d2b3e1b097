"""The results table (report/listing.py) and run ids: `results` sorts by task, label and seed
and shows only the columns that apply to the runs shown; `run` and `study` end with the same
table; every place that takes a run id takes a unique prefix of one (Store.resolve), and an
ambiguous or unknown one is one line, exit 2, naming the matches."""

import pytest
from conftest import groklab
from fake_runs import curve, spec, write

import groklab.api as gl
from groklab.engine import run_specs
from groklab.format import MISSING
from groklab.report.listing import GROKKING, LANGUAGE, results_table
from groklab.spec import RunSpec
from groklab.store import Store, UnknownRun

LM = dict(task="text", model="gpt", n_layers=1, d_model=16, n_heads=2, context=8, steps=20,
          batch_size=4, eval_every=10, eval_batches=1)


def header(out) -> list[str]:
    return groklab("results", str(out)).stdout.splitlines()[0].split()


def test_results_sorted_by_task_label_seed(tmp_path):
    order = [("x_plus_y", "b", 1), ("x_div_y", "b", 0), ("x_plus_y", "a", 1),
             ("x_plus_y", "b", 0), ("x_div_y", "a", 0), ("x_plus_y", "a", 0)]
    rates = {"a": (1e-3, 1e-3, 1e-3), "b": (2e-3, 2e-3, 2e-3)}  # labels are not ids: rates are
    write(tmp_path, [(spec(t, lr=rates[label], lr_name=label, seed=s), curve([0.5, 1.0]))
                     for t, label, s in order])
    lines = groklab("results", str(tmp_path)).stdout.splitlines()[1:]
    shown = [(line.split()[1], line.split()[3], int(line.split()[4])) for line in lines]
    assert shown == sorted(order)
    assert [(r["task"], r["label"], r["seed"]) for r in
            gl.results(tmp_path).to_dict("records")] == sorted(order)


def test_language_model_runs_show_no_grokking_columns(tmp_path):
    lm, grok = tmp_path / "lm", tmp_path / "mixed"
    write(lm, [(RunSpec(**LM, lr_name="none"), curve([0.3, 0.4]))])
    columns = header(lm)
    assert not (set(GROKKING) - set(LANGUAGE)) & set(columns)  # the val loss is both kinds'
    assert set(LANGUAGE) <= set(columns)
    write(grok, [(spec(), curve([0.3, 1.0]))])
    assert set(GROKKING) <= set(header(grok)) and "final_train_loss" not in header(grok)
    write(grok, [(RunSpec(**LM, lr_name="none"), curve([0.3, 0.4]))])
    assert set(GROKKING) | set(LANGUAGE) <= set(header(grok))  # both kinds shown: both


def test_missing_values_have_one_notation(tmp_path):
    write(tmp_path, [(spec(seed=0), curve([0.3, 0.5])), (spec(seed=1), None)])
    text = groklab("results", str(tmp_path)).stdout
    assert not any(word in text for word in ("nan", "NaN", "None", "<NA>"))
    unfinished = text.splitlines()[2].split()
    assert unfinished[5] == "interrupted" and unfinished[7:] == [MISSING] * len(GROKKING)


def test_run_ends_with_the_results_table(tmp_path):
    out = tmp_path / "out"
    proc = groklab("run", "--p", "7", "--steps", "10", "--batch-size", "16", "--set",
                   "d_model=16", "--set", "n_heads=2", "--seeds", "2", "--no-progress",
                   "--out", str(out))
    assert proc.stdout == groklab("results", str(out)).stdout
    assert len(proc.stdout.splitlines()) == 3


def many(tmp_path):
    """40 runs: some share their id's first character."""
    specs = write(tmp_path, [(spec(seed=s), curve([0.5])) for s in range(40)])
    ids = sorted(s.run_id for s in specs)
    first = {}
    for rid in ids:
        first.setdefault(rid[0], []).append(rid)
    shared = next(group for group in first.values() if len(group) > 1)
    return ids, shared


def test_ids_take_unique_prefixes_and_refuse_ambiguous_ones(tmp_path):
    ids, shared = many(tmp_path)
    with Store(tmp_path, create=False) as store:
        assert store.resolve(shared[0]) == shared[0]
        assert store.resolve(shared[0][:10]) == shared[0]
        with pytest.raises(UnknownRun, match="ambiguous"):
            store.resolve(shared[0][0])
        with pytest.raises(UnknownRun, match="no run"):
            store.resolve("zz")
    one = groklab("results", str(tmp_path), shared[1][:8]).stdout.splitlines()
    assert len(one) == 2 and one[1].startswith(shared[1])
    proc = groklab("results", str(tmp_path), shared[0][0], check=False)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert all(rid in proc.stderr for rid in shared[:10]) and "ambiguous" in proc.stderr
    unknown = groklab("results", str(tmp_path), "xyz", check=False)
    assert unknown.returncode == 2 and "no run 'xyz'" in unknown.stderr
    # sample resolves the prefix, then finds a run that is not a language model
    proc = groklab("sample", str(tmp_path), shared[1][:8], check=False)
    assert proc.returncode == 2 and f"run {shared[1]} is a x_plus_y run" in proc.stderr


def test_load_run_takes_a_prefix(tmp_path):
    s = RunSpec(task="x_plus_y", p=7, d_model=16, n_heads=2, steps=10, batch_size=16)
    run_specs([s], tmp_path, device="cpu", progress=False)
    loaded = gl.load_run(tmp_path, s.run_id[:6])
    assert loaded.spec.run_id == s.run_id
    with pytest.raises(UnknownRun):
        gl.load_run(tmp_path, "0000000000000000")


def test_results_table_of_no_runs():
    assert results_table([]) == "no runs"
