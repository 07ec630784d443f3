"""Turning a learner's answer into something a checker can compare — or into a hint when it cannot be.

Checkers normalise before they compare: one number from a Python, NumPy or one-element tensor answer; a tensor
checked for type, device and dtype before its values; inputs handed over as fresh copies and checked for
in-place edits. Anything else (None, NaN, a NumPy array, a tensor on another device) gets a ❌ naming it.
"""
from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Sequence

import torch

from .core import FAIL, Verdict, call_safely, describe


def none_hint(value) -> str:
    """The most common wrong answer of all: a function without `return` gives None."""
    return " (a function without a `return` line gives None)" if value is None else ""


def as_number(value) -> int | float | None:
    """One number as a Python int or float (a Python, NumPy or one-element tensor answer), else None.
    A huge int stays an int: float() of it would overflow."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, numbers.Real):  # e.g. fractions.Fraction
        return float(value)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.device.type == "meta" or value.is_complex() or value.dtype == torch.bool:
            return None
        return value.item()
    if type(value).__module__ == "numpy" and getattr(value, "size", 0) == 1:
        item = value.item()
        return item if isinstance(item, (int, float)) and not isinstance(item, bool) else None
    return None


def as_whole(value) -> int | None:
    """The answer as an int if it is one whole number (7, 7.0, a tensor holding 7), else None."""
    n = as_number(value)
    if isinstance(n, float) and math.isfinite(n) and n == int(n):
        return int(n)
    return n if isinstance(n, int) else None


def number_problem(value, call: str, expected: str = "a float") -> Verdict | None:
    """A FAIL naming why `value` is not one usable number (None if it is one)."""
    n = as_number(value)
    if n is None:
        meta = isinstance(value, torch.Tensor) and value.device.type == "meta"
        where = (" The meta device holds no values: compute where the inputs are, without .to(...)." if meta else "")
        return Verdict(FAIL, f"{call} returned {describe(value)}{none_hint(value)}; return one number "
                             f"({expected}).{where}")
    if isinstance(n, int) and abs(n) > 1e300:
        return Verdict(FAIL, f"{call} returned {describe(n)}, far too large for any answer here: check the formula "
                             "(a power where a product belongs?).")
    if math.isnan(n):
        return Verdict(FAIL, f"{call} returned nan (not a number): look for 0 / 0, inf − inf or the log or square "
                             "root of a negative number.")
    if math.isinf(n):
        return Verdict(FAIL, f"{call} returned {n}: look for a division by zero or a number that overflows "
                             "(math.exp of a large loss?).")
    return None


def whole_problem(value, call: str, expected: str = "a whole number, an int") -> Verdict | None:
    """A FAIL naming why `value` is not one whole number (None if it is one)."""
    problem = number_problem(value, call, expected)
    if problem is None and as_whole(value) is None:
        return Verdict(FAIL, f"{call} returned {describe(value)}; return {expected}.")
    return problem


def call_text(name: str, case: Sequence) -> str:
    """name(arg, …) as the learner would write it."""
    return f"{name}({', '.join(f'{a:g}' if isinstance(a, float) else str(a) for a in case)})"


def numbers_from(fn: Callable, cases: list[tuple], name: str, expected: str = "a float"):
    """Call fn(*case) for each case; return (values, None), or (None, Verdict) at the first exception
    or answer that is not one finite number, so a checker's verdict logic only ever sees a list of floats."""
    values = []
    for case in cases:
        value, problem = call_safely(fn, *copy.deepcopy(case))  # copies: a learner may edit a list in place
        problem = problem or number_problem(value, call_text(name, case), expected)
        if problem:
            return None, problem
        values.append(float(as_number(value)))
    return values, None


def all_close(got: list[float], expected: list[float], rel_tol: float = 1e-6, abs_tol: float = 0.0) -> bool:
    return len(got) == len(expected) and all(math.isclose(g, e, rel_tol=rel_tol, abs_tol=abs_tol)
                                             for g, e in zip(got, expected))


def shown(got: float, want: float) -> tuple[str, str]:
    """Both numbers with as many digits as it takes to see that they differ (1500 vs 1500.0000001)."""
    for digits in (4, 6, 10, 17):
        a, b = f"{got:.{digits}g}", f"{want:.{digits}g}"
        if a != b:
            return a, b
    return repr(got), repr(want)


def first_wrong(got: list[float], want: list[float], rel_tol: float = 1e-6, abs_tol: float = 0.0) -> int:
    """Index of the first answer that differs (0 if none does)."""
    return next((i for i, (g, w) in enumerate(zip(got, want))
                 if not math.isclose(g, w, rel_tol=rel_tol, abs_tol=abs_tol)), 0)


def mismatch(name: str, cases: list[tuple], got: list[float], want: list[float], unit: str = "") -> str:
    """'name(args) should be W; your function returned G.' for the first case that is wrong."""
    i = first_wrong(got, want)
    g, w = shown(got[i], want[i])
    return f"{call_text(name, cases[i])} should be {w}{unit}; your function returned {g}{unit}."


def not_a_tensor(value, what: str) -> Verdict | None:
    if isinstance(value, torch.Tensor):
        return None
    numpy = " (torch.as_tensor turns a NumPy array into one)" if type(value).__module__ == "numpy" else ""
    return Verdict(FAIL, f"{what} returned {describe(value)}{none_hint(value)}; return a torch.Tensor{numpy}.")


def device_problem(value: torch.Tensor, device: torch.device | str, what: str) -> Verdict | None:
    """A FAIL if value lives on another device than its inputs: the cells below mix the two, and torch refuses
    (a tensor on the meta device, which a test can use to stand in for a GPU, holds no values at all)."""
    if value.device == torch.device(device):
        return None
    where = "the meta device, which holds no values" if value.device.type == "meta" else str(value.device)
    return Verdict(FAIL, f"{what} is on {where}, but its inputs are on {device}: return it where the inputs are "
                         "(no .cuda(), .to(device) or device= inside the function).")


def device_dtype_problem(value: torch.Tensor, expected: torch.Tensor, what: str) -> Verdict | None:
    """A FAIL if value lives on another device or has another dtype than expected, or holds NaN where expected
    has none: the cells below mix the two, and torch refuses to."""
    problem = device_problem(value, expected.device, what)
    if problem:
        return problem
    if value.dtype != expected.dtype:
        return Verdict(FAIL, f"{what} has dtype {value.dtype}, but should be {expected.dtype} like its inputs "
                             "(a .double(), a dtype= argument or a float64 constant changes it): the cells below "
                             f"mix it with {expected.dtype} tensors, which fails.")
    if value.is_floating_point() and bool(torch.isnan(value).any()) and not bool(torch.isnan(expected).any()):
        return Verdict(FAIL, f"{what} contains NaN (not a number): look for 0 / 0, a norm of zero, or the log or "
                             "square root of a negative number.")
    return None


def same(a, b) -> bool:
    """a equals b exactly (NaN equal to NaN): the test that an input came back untouched."""
    if isinstance(a, torch.Tensor):
        if not (isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype):
            return False
        return torch.equal(a, b) or (a.is_floating_point() and torch.allclose(a, b, rtol=0, atol=0, equal_nan=True))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - an object without a usable ==: nothing to compare
        return True


def call_with_copies(fn: Callable, args: tuple, names: Sequence[str]):
    """fn(*copies of args): the checker's own cases stay as they were whatever the learner does, and a FAIL
    names the first input the learner's function changed in place."""
    given = copy.deepcopy(args)
    value, problem = call_safely(fn, *given)
    if problem:
        return None, problem
    for name, before, after in zip(names, args, given):
        if not same(before, after):
            return None, Verdict(FAIL, f"your function changed its input {name} in place (an _ method such as "
                                       f"add_, or {name} -= …): the caller still needs {name} as it was, so build "
                                       "a new tensor instead.")
    return value, None
