"""Binary operations modulo p: x+y, x-y, x/y and the polynomial ones of the original study."""

from __future__ import annotations

from collections.abc import Callable

import torch

from groklab.tasks.base import TaskData, TaskError, binary_task, register_task


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, int(n**0.5) + 1))


def _check_p(p: int) -> None:
    if p < 2:
        raise TaskError(f"p must be at least 2, got {p}")
    if p > 2000:
        raise TaskError(f"p = {p} gives a table of {p * p} pairs; use p <= 2000")


def modular_task(
    name: str, p: int, op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], b_min: int = 0
) -> TaskData:
    """All pairs (a, b) with a in 0..p-1 and b in b_min..p-1, target ``op(a, b) mod p``."""
    _check_p(p)
    a = torch.arange(p).repeat_interleave(p - b_min)
    b = torch.arange(b_min, p).repeat(p)
    return binary_task(name, a, b, op(a, b) % p, n=p)


@register_task("x_plus_y")
def x_plus_y(p: int = 97, **_: int) -> TaskData:
    return modular_task("x_plus_y", p, lambda a, b: a + b)


@register_task("x_minus_y")
def x_minus_y(p: int = 97, **_: int) -> TaskData:
    return modular_task("x_minus_y", p, lambda a, b: a - b)


@register_task("x_div_y")
def x_div_y(p: int = 97, **_: int) -> TaskData:
    """a / b in the field Z_p, i.e. a · b^(p-2) mod p (Fermat); b = 0 is excluded."""
    if not is_prime(p):
        raise TaskError(f"x_div_y needs a prime p (division mod p), got composite p = {p}")
    inverse = torch.tensor([pow(int(x), p - 2, p) for x in range(p)])
    return modular_task("x_div_y", p, lambda a, b: a * inverse[b], b_min=1)


@register_task("x2_plus_y2")
def x2_plus_y2(p: int = 97, **_: int) -> TaskData:
    return modular_task("x2_plus_y2", p, lambda a, b: a * a + b * b)


@register_task("x2_plus_xy_plus_y2")
def x2_plus_xy_plus_y2(p: int = 97, **_: int) -> TaskData:
    return modular_task("x2_plus_xy_plus_y2", p, lambda a, b: a * a + a * b + b * b)


@register_task("x3_plus_xy")
def x3_plus_xy(p: int = 97, **_: int) -> TaskData:
    return modular_task("x3_plus_xy", p, lambda a, b: (a * a % p) * a + a * b)
