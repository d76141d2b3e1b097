"""Every task's full table against independent arithmetic; the seeded split."""

import itertools

import pytest
import torch

from groklab.tasks import TaskError, build_task, split_indices
from groklab.tasks.base import EQ_TOKEN, N_SYMBOLS, OP_TOKEN


def decode(task):
    """(a, b, c) element ids of every example, checking the [a, op, b, =] layout."""
    x, y = task.inputs.tolist(), task.targets.tolist()
    out = []
    for (a, op, b, eq), c in zip(x, y, strict=True):
        assert op == OP_TOKEN and eq == EQ_TOKEN
        assert a >= N_SYMBOLS and b >= N_SYMBOLS
        out.append((a - N_SYMBOLS, b - N_SYMBOLS, c))
    return out


@pytest.mark.parametrize("p", [2, 7, 11, 97])
def test_x_plus_y_and_x_minus_y(p):
    plus, minus = build_task("x_plus_y", p=p), build_task("x_minus_y", p=p)
    for task, f in ((plus, lambda a, b: (a + b) % p), (minus, lambda a, b: (a - b) % p)):
        rows = decode(task)
        assert sorted((a, b) for a, b, _ in rows) == [(a, b) for a in range(p) for b in range(p)]
        assert all(c == f(a, b) for a, b, c in rows)
        assert task.vocab_size == p + 2 and task.n_classes == p and task.seq_len == 4


@pytest.mark.parametrize("p", [2, 5, 13, 97])
def test_x_div_y_is_field_division(p):
    rows = decode(build_task("x_div_y", p=p))
    assert sorted((a, b) for a, b, _ in rows) == [(a, b) for a in range(p) for b in range(1, p)]
    for a, b, c in rows:
        assert (c * b) % p == a  # c = a / b  <=>  c·b = a in Z_p
        assert c == (a * pow(b, p - 2, p)) % p


def test_polynomial_tasks():
    p = 11
    for name, f in [("x2_plus_y2", lambda a, b: a * a + b * b),
                    ("x2_plus_xy_plus_y2", lambda a, b: a * a + a * b + b * b),
                    ("x3_plus_xy", lambda a, b: a**3 + a * b)]:
        assert all(c == f(a, b) % p for a, b, c in decode(build_task(name, p=p)))


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_permutation_composition_order(k):
    perms = list(itertools.permutations(range(k)))
    task = build_task("permutation", k=k)
    n = len(perms)
    assert len(task) == n * n and task.n_classes == n and task.vocab_size == n + 2
    for a, b, c in decode(task):
        sigma, tau = perms[a], perms[b]
        assert perms[c] == tuple(sigma[tau[i]] for i in range(k))


def test_permutation_is_not_commutative_for_k3():
    task = build_task("permutation", k=3)
    table = {(a, b): c for a, b, c in decode(task)}
    assert any(table[a, b] != table[b, a] for a, b in table)


def test_bad_settings_are_refused():
    with pytest.raises(TaskError, match="prime"):
        build_task("x_div_y", p=91)
    with pytest.raises(TaskError, match="k >= 2"):
        build_task("permutation", k=1)
    with pytest.raises(TaskError, match="unknown task"):
        build_task("x_times_y")
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(TaskError, match="between 0 and 1"):
            split_indices(100, bad, torch.Generator().manual_seed(0))


def test_split_sizes_disjoint_and_seeded():
    n = 97 * 97
    tr, va = split_indices(n, 0.5, torch.Generator().manual_seed(0))
    assert len(tr) == n // 2 and len(va) == n - n // 2
    assert set(tr.tolist()).isdisjoint(va.tolist())
    assert sorted(tr.tolist() + va.tolist()) == list(range(n))
    tr2, _ = split_indices(n, 0.5, torch.Generator().manual_seed(0))
    tr3, _ = split_indices(n, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(tr, tr2)
    assert not torch.equal(tr, tr3)
    tr4, va4 = split_indices(n, 0.3, torch.Generator().manual_seed(0))
    assert len(tr4) == int(0.3 * n) and len(tr4) + len(va4) == n
