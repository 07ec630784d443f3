"""Checkers for 05_lora_layer_from_scratch: init_lora, lora_forward, merged_weight."""
from __future__ import annotations

from collections.abc import Callable

import torch

from .answers import device_dtype_problem, none_hint, not_a_tensor
from .core import FAIL, PASS, Verdict, call_safely, describe, report

_ORDER_HINT = ("check the order and the transposes: x (…, in) @ A.T (in, r) @ B.T (r, out), and ΔW = B @ A "
               "is (out, in) like W.")


def _is_tensor_pair(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(t, torch.Tensor) for t in value)


def _with_shape_hint(problem: Verdict) -> Verdict:
    """A shape error from a matmul most often means B @ A in the wrong order or a missing transpose."""
    if problem.status == FAIL and ("shape" in problem.message or "size" in problem.message):
        return Verdict(FAIL, f"{problem.message} — {_ORDER_HINT}")
    return problem


# ---------------------------------------------------------------- init_lora(in_features, out_features, r)


def _init_dtype_device_problem(A: torch.Tensor, B: torch.Tensor) -> Verdict | None:
    """The cells below compute x @ A.T with a float32 x on the CPU: A and B must match it."""
    if not (A.is_floating_point() and B.is_floating_point()):
        return Verdict(FAIL, f"A and B must be float tensors, got {A.dtype} and {B.dtype}.")
    if A.device.type != "cpu" or B.device.type != "cpu":
        return Verdict(FAIL, f"A is on {A.device} and B on {B.device}: create them on the CPU, where the layer's W and "
                             "x are (no device= or .to(...) here), or x @ A.T below fails.")
    if A.dtype != torch.float32 or B.dtype != torch.float32:
        return Verdict(FAIL, f"A is {A.dtype} and B is {B.dtype}, but the layer's W and x are torch.float32: x @ A.T "
                             "below would fail (both sides of @ need one dtype). Create them without a dtype= (float32 "
                             "is the default) and without .double().")
    return None


def _init_lora_verdict(fn: Callable) -> Verdict:
    n_in, n_out, r = 12, 5, 3
    value, problem = call_safely(fn, n_in, n_out, r)
    if problem:
        return problem
    if not _is_tensor_pair(value):
        return Verdict(FAIL, f"return the pair (A, B) of two tensors, got {describe(value)}{none_hint(value)}.")
    A, B = value
    shapes = (tuple(A.shape), tuple(B.shape))
    if shapes == ((n_out, r), (r, n_in)):
        return Verdict(FAIL, "you returned (B, A); return (A, B) in that order.")
    if shapes == ((n_in, r), (r, n_out)):
        return Verdict(FAIL, "your shapes are transposed: A is (r, in) and B is (out, r), as PEFT's lora_A and "
                             "lora_B, so that B @ A is (out, in) like W.")
    if shapes != ((r, n_in), (n_out, r)):
        return Verdict(FAIL, f"init_lora({n_in}, {n_out}, {r}) should give A (3, 12) and B (5, 3); "
                             f"got A {shapes[0]} and B {shapes[1]}.")
    problem = _init_dtype_device_problem(A, B)
    if problem:
        return problem
    a_zero, b_zero = bool((A == 0).all()), bool((B == 0).all())
    if a_zero and b_zero:
        return Verdict(FAIL, "both A and B are zero. Then BA = 0 as wanted, but the gradient of B is "
                             "proportional to A and the gradient of A to B: both are zero and training never starts. "
                             "Make B zero and A random (torch.empty alone does not fill A: call "
                             "nn.init.kaiming_uniform_(A, a=5 ** 0.5) on it).")
    if a_zero:
        return Verdict(FAIL, "you made A zero and B random. BA = 0 holds, but the convention (paper §4.1, loralib, "
                             "PEFT) is the other way round: B zero, A random. Follow it so adapters stay compatible.")
    if not (bool(torch.isfinite(A).all()) and 1e-4 < float(A.abs().max()) < 10):  # A is not zero here
        return Verdict(FAIL, "A looks uninitialised (entries that are NaN, huge or almost 0): torch.empty only "
                             "reserves memory and keeps whatever was there. Fill it: "
                             "nn.init.kaiming_uniform_(A, a=5 ** 0.5).")
    if not b_zero:
        return Verdict(FAIL, "B is not zero, so BA ≠ 0 and the model does not start where the base model was. "
                             "Initialise B with zeros (torch.zeros(out, r)).")
    if bool((A == A.flatten()[0]).all()):
        return Verdict(FAIL, "every entry of A is the same number; A must be random (identical rows would get "
                             "identical gradients). Use nn.init.kaiming_uniform_(A, a=math.sqrt(5)).")
    return Verdict(PASS, "correct: A (r, in) random, B (out, r) zero, so BA = 0 and the model starts unchanged.")


def check_init_lora(fn: Callable) -> Callable:
    from ..toy import init_lora

    return report("init_lora", lambda: _init_lora_verdict(fn), fn, init_lora, "lora_scratch.toy.init_lora")


# ---------------------------------------------------------------- lora_forward(x, W, b, A, B, alpha, r)


def _forward_case(batch_shape: tuple[int, ...]):
    g = torch.Generator().manual_seed(5)
    n_in, n_out, r, alpha = 6, 4, 2, 3.0  # scaling 1.5: distinguishes alpha / r from alpha, r / alpha and 1
    x = torch.randn(*batch_shape, n_in, generator=g)
    W, b = torch.randn(n_out, n_in, generator=g), torch.randn(n_out, generator=g)
    A, B = torch.randn(r, n_in, generator=g), torch.randn(n_out, r, generator=g)
    return x, W, b, A, B, alpha, r


def _forward_mistakes(x, W, b, A, B, alpha, r) -> list[tuple[torch.Tensor, str]]:
    base, path = x @ W.T + b, x @ A.T @ B.T
    return [
        (base + path, f"you forgot the scaling (or wrote alpha // r, which rounds {alpha:g} / {r} down to "
                      f"{alpha // r:g}): the LoRA path is multiplied by alpha / r."),
        (base + alpha * path, "you scaled by alpha only; the scaling is alpha / r (it keeps the update's size "
                              "comparable when you change r)."),
        (base + (r / alpha) * path, "you scaled by r / alpha; the scaling is alpha / r."),
        (x @ W.T + (alpha / r) * path, "you forgot the bias b of the frozen layer."),
        ((alpha / r) * path, "you returned only the LoRA path; add the frozen layer's output x @ W.T + b."),
        (base, "you returned only the frozen layer's output; add (alpha / r) · x @ A.T @ B.T."),
    ]


def _lora_forward_verdict(fn: Callable) -> Verdict:
    for batch_shape in [(5,), (2, 3)]:
        case = _forward_case(batch_shape)
        args = [t.clone() if isinstance(t, torch.Tensor) else t for t in case]  # so we can see in-place edits
        value, problem = call_safely(fn, *args)
        if problem and len(batch_shape) > 1:
            return Verdict(FAIL, f"x of shape (5, 6) works, but for x of shape (2, 3, 6) {problem.message}. "
                                 "torch.mm takes 2-D matrices only; use @ (torch.matmul), which treats the leading "
                                 "dimensions of x as a batch.")
        if problem:
            return _with_shape_hint(problem)
        changed = [name for name, a, c in zip("x W b A B".split(), args, case) if not torch.equal(a, c)]
        if changed:
            return Verdict(FAIL, f"your function changed its input {changed[0]} in place ({changed[0]} += … or an "
                                 "_ method). Build the output as a new tensor: the caller still needs its inputs.")
        x, W, b, A, B, alpha, r = case
        expected = x @ W.T + b + (alpha / r) * (x @ A.T @ B.T)
        problem = not_a_tensor(value, f"lora_forward for x of shape {tuple(x.shape)}")
        if problem:
            return problem
        if value.shape != expected.shape:
            return Verdict(FAIL, f"for x of shape {tuple(x.shape)} the output should be {tuple(expected.shape)} "
                                 f"(…, out), got {tuple(value.shape)}; {_ORDER_HINT}")
        problem = device_dtype_problem(value, expected, f"the output for x of shape {tuple(x.shape)}")
        if problem:
            return problem
        if not torch.allclose(value, expected, atol=1e-5):
            for wrong, hint in _forward_mistakes(*case):
                if torch.allclose(value, wrong, atol=1e-5):
                    return Verdict(FAIL, hint)
            return Verdict(FAIL, "the values are wrong: h = x @ W.T + b + (alpha / r) · x @ A.T @ B.T.")
    return Verdict(PASS, "correct: h = x Wᵀ + b + (alpha / r) · x Aᵀ Bᵀ, for any leading batch dimensions.")


def check_lora_forward(fn: Callable) -> Callable:
    from ..toy import lora_forward

    return report("lora_forward", lambda: _lora_forward_verdict(fn), fn, lora_forward, "lora_scratch.toy.lora_forward")


# ---------------------------------------------------------------- merged_weight(W, A, B, alpha, r)


def _merge_weight_verdict(fn: Callable) -> Verdict:
    _, W, _, A, B, alpha, r = _forward_case((1,))
    given = (W.clone(), A.clone(), B.clone())
    value, problem = call_safely(fn, *given, alpha, r)
    if problem:
        return _with_shape_hint(problem)
    if not torch.equal(given[0], W):
        return Verdict(FAIL, "your function changed W in place (W += …). Return a new matrix W + ΔW and leave W "
                             "alone: the frozen base must stay recoverable.")
    if not (torch.equal(given[1], A) and torch.equal(given[2], B)):
        return Verdict(FAIL, "your function changed A or B in place (an _ method, or A *= …): the adapter must "
                             "stay as it was. Compute W + (alpha / r) · B @ A as a new tensor.")
    problem = not_a_tensor(value, "merged_weight(W, A, B, alpha, r)")
    if problem:
        return problem
    if value.shape != W.shape:
        return Verdict(FAIL, f"the merged weight must have W's shape {tuple(W.shape)} (out, in), got "
                             f"{tuple(value.shape)}; {_ORDER_HINT}")
    problem = device_dtype_problem(value, W, "the merged weight")
    if problem:
        return problem
    delta = B @ A
    mistakes = [
        (W + delta, f"you forgot the scaling (or wrote alpha // r, which rounds {alpha:g} / {r} down to "
                    f"{alpha // r:g}): W + (alpha / r) · B @ A."),
        (W + alpha * delta, "you scaled by alpha only; the scaling is alpha / r."),
        (W + (r / alpha) * delta, "you scaled by r / alpha; the scaling is alpha / r."),
        ((alpha / r) * delta, "you returned only ΔW; the merged weight is W + ΔW."),
        (W - (alpha / r) * delta, "you subtracted ΔW; merging adds it (unmerging subtracts)."),
    ]
    if torch.allclose(value, W + (alpha / r) * delta, atol=1e-5):
        return Verdict(PASS, "correct: W + (alpha / r) · B @ A, one (out, in) matrix, W left untouched.")
    for wrong, hint in mistakes:
        if torch.allclose(value, wrong, atol=1e-5):
            return Verdict(FAIL, hint)
    return Verdict(FAIL, "the values are wrong: merged = W + (alpha / r) · B @ A.")


def check_merged_weight(fn: Callable) -> Callable:
    from ..toy import merged_weight

    return report("merged_weight", lambda: _merge_weight_verdict(fn), fn, merged_weight,
                  "lora_scratch.toy.merged_weight")

