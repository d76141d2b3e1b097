"""Build the groklab 0.1 store fixture ``store-v0/groklab.sqlite`` with groklab 0.1 itself.

Run with groklab 0.1 on the path (not the current code)::

    PYTHONPATH=/tmp/before/src python tests/data/make_store_v0.py

See README.md for what the store holds and why.
"""

import shutil
import sqlite3
import time
from pathlib import Path

import groklab
from groklab.engine.cohort import train_cohort
from groklab.store import STORE_NAME, Store
from groklab.studies.study import load_file, load_toml

HERE = Path(__file__).parent
OUT = HERE / "store-v0"
TINY = dict(steps=20, eval_every=5, d_model=16, n_heads=2, batch_size=32, device="cpu",
            progress=False)
PERM_STUDY = """
name = "fixture-perm"
description = "Two runs that differ only in p, which permutation ignores."
[settings]
task = "permutation"
k = 3
steps = 20
eval_every = 5
d_model = 16
n_heads = 2
batch_size = 32
[grid]
p = [11, 13]
[variants.layerwise]
lr = "layerwise"
"""


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    # a study: x_plus_y (ids unchanged by the migration) and permutation with p = 11 (changed)
    groklab.study(load_file(HERE / "store-v0-study.toml"), OUT, device="cpu", progress=False)
    # a study whose two members become one run (permutation ignores p)
    groklab.study(load_toml(PERM_STUDY, "<fixture>"), OUT, device="cpu", progress=False)
    # three plain runs that are one run under the new identity: p = 97 (finished first),
    # p = 59 (finished last) and p = 23 (killed after two evaluations, never finished)
    perm = dict(task="permutation", k=3, lr="baseline", **TINY)
    groklab.run(OUT, **perm)
    time.sleep(0.05)
    groklab.run(OUT, p=59, **perm)
    spec = groklab.make_specs(task="permutation", k=3, p=23, steps=20, eval_every=5,
                              d_model=16, n_heads=2, batch_size=32)[0]
    curve = train_cohort([spec], "cpu", progress=False)[0]
    with Store(OUT) as store:
        store.begin([spec], "cpu")
        store.append({spec.run_id: curve[:2]})
    # d_ff = 4 * d_model given explicitly (the same run as leaving it unset)
    groklab.run(OUT, task="x_plus_y", p=11, d_ff=64, seed=5, **TINY)

    db = sqlite3.connect(OUT / STORE_NAME)  # one self-contained file
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("VACUUM")
    db.close()
    for extra in OUT.glob(STORE_NAME + "-*"):
        extra.unlink()


if __name__ == "__main__":
    main()
