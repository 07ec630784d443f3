"""Checkers for 08_merge_save_serve: merge_weight, storage_bytes, speedup_ratio.

Each one calls the learner's function on known inputs and, when the answer is wrong, compares it with
the typical mistakes (written out below) to name the one the learner made.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .core import FAIL, PASS, Verdict, all_close, call_safely, numbers_from, report

# ---- merge_weight(W, A, B, scaling) ---------------------------------------------------------------


def _merge_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    g = torch.Generator().manual_seed(0)
    # (out, in) = (5, 3) and r = 2: not square, so swapped shapes fail loudly
    return torch.randn(5, 3, generator=g), torch.randn(2, 3, generator=g), torch.randn(5, 2, generator=g), 2.0


def _merge_verdict(fn: Callable) -> Verdict:
    W, A, B, s = _merge_inputs()
    W_before = W.clone()
    got, problem = call_safely(fn, W, A, B, s)
    if problem:
        if "mat1 and mat2" in problem.message or "shapes cannot be multiplied" in problem.message:
            return Verdict(FAIL, "the shapes do not fit: W is (out, in), B is (out, r), A is (r, in), so ΔW = B @ A "
                                 f"(not A @ B). Your function raised: {problem.message}")
        return problem
    if not torch.equal(W, W_before):
        return Verdict(FAIL, "you changed W in place (W += ...). Return a new tensor, W + ...: the original base "
                             "weight must stay recoverable.")
    if not isinstance(got, torch.Tensor) or got.shape != W.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return Verdict(FAIL, f"return a tensor of W's shape {tuple(W.shape)}, got {shape}.")
    near = lambda t: torch.allclose(got, t, atol=1e-5)  # noqa: E731
    if near(W + s * B @ A):
        return Verdict(PASS, "correct: W0 + (alpha / r) · B A, a new matrix of the same shape as W0.")
    if near(W + B @ A):
        return Verdict(FAIL, "you forgot the scaling: the update is scaling · B @ A (scaling = alpha / r).")
    if near(W + B @ A / s):
        return Verdict(FAIL, "you divided by the scaling; multiply: W + scaling · B @ A.")
    if near(s * B @ A):
        return Verdict(FAIL, "you returned only ΔW; the merged weight is W + ΔW.")
    return Verdict(FAIL, "the merged weight should be W + scaling · (B @ A); your result differs.")


def check_merge_weight(fn: Callable) -> Callable:
    from ..serve import merge_weight

    return report("merge_weight", _merge_verdict(fn), fn, merge_weight, "lora_scratch.serve.merge_weight")


# ---- storage_bytes(n_base, n_adapter, n_tenants, bytes_per_param) -------------------------------

STORAGE_CASES = [(1_000_000, 10_000, 5, 2), (2_000, 30, 1, 4), (7_000_000, 35_000, 100, 2)]


def _storage_verdict(fn: Callable) -> Verdict:
    got, problem = numbers_from(fn, STORAGE_CASES, "storage_bytes", "an int, the number of bytes")
    if problem:
        return problem
    fits = lambda f: all_close(got, [f(*c) for c in STORAGE_CASES])  # noqa: E731
    if fits(lambda nb, na, n, b: (nb + n * na) * b):
        return Verdict(PASS, "correct: one shared base plus one small adapter per tenant.")
    if fits(lambda nb, na, n, b: n * (nb + na) * b):
        return Verdict(FAIL, "you stored a base copy for every tenant; the base is frozen and shared, so it is "
                             "stored once: (n_base + n_tenants · n_adapter) · bytes_per_param.")
    if fits(lambda nb, na, n, b: n * nb * b):
        return Verdict(FAIL, "that is N full copies of the model (full fine-tuning). With LoRA the base is "
                             "stored once and each tenant adds only its adapter.")
    if fits(lambda nb, na, n, b: (nb + na) * b):
        return Verdict(FAIL, "you counted one adapter; every tenant has its own: n_tenants · n_adapter.")
    if fits(lambda nb, na, n, b: nb + n * na):
        return Verdict(FAIL, "that is a number of parameters; multiply by bytes_per_param to get bytes.")
    return Verdict(FAIL, f"storage_bytes{STORAGE_CASES[0]} should be {(1_000_000 + 5 * 10_000) * 2:,}; "
                         f"your function returned {got[0]:,.0f}.")


def check_storage_bytes(fn: Callable) -> Callable:
    from ..serve import storage_bytes

    return report("storage_bytes", _storage_verdict(fn), fn, storage_bytes, "lora_scratch.serve.storage_bytes")


# ---- speedup_ratio(times_a, times_b) ------------------------------------------------------------

# one slow round in each list (another job on the machine): the mean moves, the median does not
SPEED_CASES = [([1.0, 1.1, 0.9, 1.0, 9.0], [2.0, 2.1, 1.9, 2.0, 2.2]),
               ([3.0, 3.0, 3.1, 2.9, 3.0], [1.5, 1.6, 1.4, 1.5, 6.0])]


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return (s[len(s) // 2] + s[(len(s) - 1) // 2]) / 2


def _speed_verdict(fn: Callable) -> Verdict:
    got, problem = numbers_from(fn, [(list(a), list(b)) for a, b in SPEED_CASES], "speedup_ratio")
    if problem:
        return problem
    fits = lambda f: all_close(got, [f(a, b) for a, b in SPEED_CASES])  # noqa: E731
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    if fits(lambda a, b: _median(b) / _median(a)):
        return Verdict(PASS, "correct: median(B) / median(A), robust to a slow round.")
    if fits(lambda a, b: _median(a) / _median(b)):
        return Verdict(FAIL, "inverted: A twice as fast as B means A's times are half of B's, so the speedup is "
                             "median(times_b) / median(times_a).")
    if fits(lambda a, b: mean(b) / mean(a)) or fits(lambda a, b: mean(a) / mean(b)):
        return Verdict(FAIL, "you used means: one slow round (another job on the machine) drags a mean; "
                             "use the median of each list.")
    if fits(lambda a, b: min(b) / min(a)):
        return Verdict(FAIL, "you used the fastest round; the course reports medians (and their spread).")
    return Verdict(FAIL, f"for A ≈ 1 s and B ≈ 2 s per call the speedup of A is 2.0; your function returned "
                         f"{got[0]:.3g}." if not math.isnan(got[0]) else "your function returned NaN.")


def check_speedup_ratio(fn: Callable) -> Callable:
    from ..bench import speedup_ratio

    return report("speedup_ratio", _speed_verdict(fn), fn, speedup_ratio, "lora_scratch.bench.speedup_ratio")
