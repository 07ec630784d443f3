"""Checkers for 01_rank_and_svd: factored_params, low_rank_approx, relative_error, energy_share."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .answers import (
    as_number,
    as_whole,
    call_with_copies,
    device_dtype_problem,
    first_wrong,
    not_a_tensor,
    number_problem,
    shown,
    whole_problem,
)
from .core import FAIL, PASS, Verdict, call_safely, report

# ---------------------------------------------------------------- factored_params(d, k, r)

_PARAM_CASES = [(768, 768, 4), (1000, 200, 10), (6, 3, 1)]


def _factored_params_verdict(fn: Callable) -> Verdict:
    got = []
    for d, k, r in _PARAM_CASES:
        value, problem = call_safely(fn, d, k, r)
        if problem:
            return problem
        problem = whole_problem(value, f"factored_params({d}, {k}, {r})", "a whole number, an int")
        if problem:
            return problem
        got.append(as_whole(value))
    matches = lambda f: all(g == f(d, k, r) for g, (d, k, r) in zip(got, _PARAM_CASES))  # noqa: E731
    if matches(lambda d, k, r: (d + k) * r):
        return Verdict(PASS, "correct: B (d, r) holds d·r numbers and A (r, k) holds r·k, so (d + k)·r.")
    mistakes = [
        (lambda d, k, r: d * k, "you returned d·k, the size of the full matrix; the point is to store the "
                                "two thin factors B (d, r) and A (r, k) instead."),
        (lambda d, k, r: d * k * r, "you multiplied d·k·r; the factors B (d, r) and A (r, k) hold d·r + r·k numbers."),
        (lambda d, k, r: d + k, "you counted one outer product u vᵀ (d + k numbers); a rank-r matrix is a sum of "
                                "r of them: multiply by r."),
        (lambda d, k, r: 2 * d * r, "you assumed a square matrix (2·d·r); B is (d, r) but A is (r, k): use d + k."),
        (lambda d, k, r: d * r, "you counted only B (d, r); A (r, k) adds r·k more."),
        (lambda d, k, r: k * r, "you counted only A (r, k); B (d, r) adds d·r more."),
    ]
    for wrong, hint in mistakes:
        if matches(wrong):
            return Verdict(FAIL, hint)
    i = next(i for i, (g, (d, k, r)) in enumerate(zip(got, _PARAM_CASES)) if g != (d + k) * r)
    d, k, r = _PARAM_CASES[i]
    return Verdict(FAIL, f"factored_params({d}, {k}, {r}) should be ({d} + {k})·{r} = {(d + k) * r}, your function "
                         f"returned {got[i]}.")


def check_factored_params(fn: Callable) -> Callable:
    from ..counting import lora_params

    def reference(d: int, k: int, r: int) -> int:
        return lora_params(d_in=k, d_out=d, r=r)

    return report("factored_params", lambda: _factored_params_verdict(fn), fn, reference,
                  "lora_scratch.counting.lora_params", probe=(768, 768, 4))


# ---------------------------------------------------------------- low_rank_approx(M, r)

_SPECTRUM = [10.0, 7.0, 5.0, 3.0, 2.0, 1.0, 0.5, 0.25]


def _test_matrix() -> torch.Tensor:
    """A 12x8 float32 matrix with known, well-separated singular values (so every mistake differs)."""
    g = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(12, 8, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    return (U * torch.tensor(_SPECTRUM, dtype=torch.float64) @ V.T).float()


VH_HINT = ("torch.linalg.svd returns Vh = Vᵀ, not V: its *rows* are the right singular vectors. You took its "
           "columns (or transposed it), as if it were V.")


def _svd_mistakes(M: torch.Tensor, r: int) -> list[tuple[torch.Tensor, str]]:
    U, S, Vh = torch.linalg.svd(M.double(), full_matrices=False)
    n = len(S)
    return [
        (U[:, :r] @ Vh[:r], "you dropped the singular values: without them every direction has weight 1. The "
                            "pieces are U, S and Vh; use all three."),
        (U[:, :r] @ torch.diag(S[:r]) @ Vh[:, :r].T, VH_HINT),
        (U[:, n - r:] @ torch.diag(S[n - r:]) @ Vh[n - r:], "you kept the r *smallest* singular directions; "
                                                           "torch.linalg.svd sorts S descending."),
        (U[:, :r + 1] @ torch.diag(S[:r + 1]) @ Vh[:r + 1], "you kept r + 1 directions (off by one): a slice "
                                                           "[:k] holds k items."),
        (U[:, :r - 1] @ torch.diag(S[:r - 1]) @ Vh[:r - 1], "you kept r - 1 directions (off by one): a slice "
                                                           "[:k] holds k items."),
        (U[:, :r] @ torch.diag(S[:r] ** 2) @ Vh[:r], "you squared the singular values; each direction is weighted "
                                                     "by s_i itself."),
    ]


def _compare_low_rank(out, M: torch.Tensor, r: int) -> Verdict | None:
    """None if out is the rank-r truncated SVD of M, else a FAIL naming the likely mistake."""
    problem = not_a_tensor(out, f"low_rank_approx(M, {r})")
    if problem:
        return problem
    if out.shape != M.shape:
        return Verdict(FAIL, f"the approximation must have M's shape {tuple(M.shape)}, got {tuple(out.shape)}: a "
                             "rank-r approximation multiplies all three pieces of the SVD back together.")
    if out.dtype != M.dtype:
        return Verdict(FAIL, f"M is {M.dtype}, your result is {out.dtype}: return the same dtype as M.")
    problem = device_dtype_problem(out, M, f"low_rank_approx(M, {r})")
    if problem:
        return problem
    U, S, Vh = torch.linalg.svd(M.double(), full_matrices=False)
    want = U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]
    if torch.allclose(out.double(), want, atol=1e-4):
        return None
    for wrong, hint in _svd_mistakes(M, r):
        if torch.allclose(out.double(), wrong, atol=1e-4):
            return Verdict(FAIL, hint)
    err = float(torch.linalg.norm(out.double() - want) / torch.linalg.norm(want))
    return Verdict(FAIL, f"for r = {r} your result is {err:.2g} (relative) away from the truncated SVD: keep the "
                         "r largest singular values with their left and right singular vectors.")


def _raised_on_shapes(problem: Verdict) -> Verdict:
    """A matmul shape error here most often means Vh was used the wrong way round."""
    if "cannot be multiplied" in problem.message or "size mismatch" in problem.message:
        return Verdict(FAIL, f"{problem.message} — check which way round each piece is: U is (m, k), S holds k "
                             "values, and Vh (k, n) has the right singular vectors as its rows.")
    return problem


def _low_rank_verdict(fn: Callable) -> Verdict:
    M = _test_matrix()
    for r in (3, 1):
        out, problem = call_with_copies(fn, (M, r), ("M", "r"))
        problem = _raised_on_shapes(problem) if problem else _compare_low_rank(out, M, r)
        if problem:
            return problem
    return Verdict(PASS, "correct: the top-r singular triplets, U_r diag(s_1..s_r) V_rᵀ.")


def check_low_rank_approx(fn: Callable) -> Callable:
    from ..linalg import low_rank_approx

    return report("low_rank_approx", lambda: _low_rank_verdict(fn), fn, low_rank_approx,
                  "lora_scratch.linalg.low_rank_approx")


# ---------------------------------------------------------------- relative_error(M, M_hat)


def _relative_error_verdict(fn: Callable) -> Verdict:
    M = torch.tensor([[3.0, 0.0], [0.0, 4.0]])  # ||M||_F = 5
    M_hat = torch.tensor([[3.0, 0.0], [0.0, 1.0]])  # difference: one entry of 3, ||M - M_hat||_F = 3
    value, problem = call_with_copies(fn, (M, M_hat), ("M", "M_hat"))
    problem = problem or number_problem(value, "relative_error(M, M_hat)", "e.g. with float(...)")
    if problem:
        return problem
    value = float(as_number(value))
    if math.isclose(value, 0.6, rel_tol=1e-5):
        same, problem = call_with_copies(fn, (M, M), ("M", "M_hat"))
        if problem:
            return problem
        if as_number(same) is not None and abs(float(as_number(same))) < 1e-7:
            return Verdict(PASS, "correct: ||M − M̂||_F / ||M||_F.")
        return Verdict(FAIL, "relative_error(M, M) must be 0.")
    mistakes = [
        (3.0, "you returned ||M − M̂||_F without dividing by ||M||_F; the error is *relative*."),
        (0.36, "you divided the squared norms; take the square roots (torch.linalg.norm gives the Frobenius norm, "
               "not its square)."),
        (3.0 / math.sqrt(10.0), "you divided by ||M̂||_F; divide by the norm of the original M."),
        (0.75, "you computed the mean absolute error (or an element-wise average); use the Frobenius norm, "
               "torch.linalg.norm(M - M_hat) / torch.linalg.norm(M)."),
        (0.4, "you returned 1 − error (a similarity); return the error itself."),
    ]
    for wrong, hint in mistakes:
        if math.isclose(value, wrong, rel_tol=1e-5):
            return Verdict(FAIL, hint)
    return Verdict(FAIL, f"for M = diag(3, 4) and M̂ = diag(3, 1) the answer is 3 / 5 = 0.6; you returned {value:.4g}.")


def check_relative_error(fn: Callable) -> Callable:
    from ..linalg import relative_error

    return report("relative_error", lambda: _relative_error_verdict(fn), fn, relative_error,
                  "lora_scratch.linalg.relative_error", probe=(torch.eye(2), torch.zeros(2, 2)))


# ---------------------------------------------------------------- energy_share(S, r)


def _energy_share_verdict(fn: Callable) -> Verdict:
    S = torch.tensor([4.0, 3.0, 2.0, 1.0])  # squares 16, 9, 4, 1: total 30
    got = []
    for r in (1, 2):
        value, problem = call_with_copies(fn, (S, r), ("S", "r"))
        problem = problem or number_problem(value, f"energy_share(S, {r})", "e.g. with float(...)")
        if problem:
            return problem
        got.append(float(as_number(value)))
    close = lambda pair: all(math.isclose(g, w, rel_tol=1e-5) for g, w in zip(got, pair))  # noqa: E731
    if close((16 / 30, 25 / 30)):
        return Verdict(PASS, "correct: the top-r share of sum s_i², i.e. of ||M||_F².")
    mistakes = [
        ((4 / 10, 7 / 10), "you summed the singular values themselves; energy is their *square*: "
                           "(S[:r] ** 2).sum() / (S ** 2).sum()."),
        ((25 / 30, 29 / 30), "you kept r + 1 values: S[:r] already holds the top r (off by one)."),
        ((1 / 30, 5 / 30), "you took the smallest singular values; S is sorted descending, so the top r are S[:r]."),
        ((14 / 30, 5 / 30), "you returned the share of the tail (1 − share); return the top-r part."),
        ((1600 / 30, 2500 / 30), "you returned a percentage; return a fraction between 0 and 1."),
        ((16 / 16, 25 / 25), "you divided by the top-r energy itself; divide by the total, (S ** 2).sum()."),
    ]
    for pair, hint in mistakes:
        if close(pair):
            return Verdict(FAIL, hint)
    i = first_wrong(got, [16 / 30, 25 / 30], rel_tol=1e-5)
    g, w = shown(got[i], [16 / 30, 25 / 30][i])
    return Verdict(FAIL, f"for S = [4, 3, 2, 1] and r = {i + 1} the share is {[16, 25][i]} / 30 = {w}; you returned "
                         f"{g}.")


def check_energy_share(fn: Callable) -> Callable:
    from ..linalg import energy_share

    return report("energy_share", lambda: _energy_share_verdict(fn), fn, energy_share,
                  "lora_scratch.linalg.energy_share", probe=(torch.tensor([4.0, 3.0, 2.0, 1.0]), 1))
