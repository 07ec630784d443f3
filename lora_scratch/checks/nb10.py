"""Checkers for 10_lora_variants_and_analysis: rslora_scaling, dora_weight, pissa_factors, loraplus_param_groups."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .answers import all_close, as_number, call_with_copies, device_dtype_problem, mismatch, none_hint, numbers_from
from .core import FAIL, PASS, Verdict, call_safely, describe, report

# ---------------------------------------------------------------- rslora_scaling(alpha, r)

_RS_CASES = [(16.0, 4), (8.0, 16), (6.0, 9), (2.0, 1), (4.0, 8)]  # the last is not whole: // or int() shows


def _rslora_verdict(fn: Callable) -> Verdict:
    got, problem = numbers_from(fn, _RS_CASES, "rslora_scaling", "the scaling factor, a float")
    if problem and "must be Tensor" in problem.message:  # torch.sqrt(r) on a Python int
        return Verdict(FAIL, f"{problem.message} — r is a Python int, and torch functions want tensors: use "
                             "math.sqrt(r) or r ** 0.5.")
    if problem:
        return problem
    mistakes = [
        (lambda a, r: a / r, "you returned alpha / r, plain LoRA's scaling; rsLoRA divides by the square root of r."),
        (lambda a, r: a * math.sqrt(r), "you multiplied by sqrt(r); rsLoRA divides: alpha / sqrt(r)."),
        (lambda a, r: math.sqrt(a / r), "you took the square root of alpha / r; only r goes under the root."),
        (lambda a, r: math.sqrt(r) / a, "you returned sqrt(r) / alpha, upside down; it is alpha / sqrt(r)."),
        (lambda a, r: a / r ** 2, "you divided by r squared; rsLoRA divides by sqrt(r) = r ** 0.5."),
        (lambda a, r: a / r / 2, "alpha / r ** 1/2 is (alpha / r) / 2 in Python (** binds first, then / 2): write "
                                 "r ** 0.5 or math.sqrt(r)."),
        (lambda a, r: a // math.sqrt(r), "you rounded down (// or int()): rslora_scaling(4, 8) is 4 / sqrt(8) ≈ 1.414, "
                                         "not a whole number; divide with /."),
    ]
    if all_close(got, [a / math.sqrt(r) for a, r in _RS_CASES]):
        return Verdict(PASS, "correct: alpha / sqrt(r) (rsLoRA, Kalajdzievski 2023).")
    for wrong, hint in mistakes:
        if all_close(got, [wrong(a, r) for a, r in _RS_CASES]):
            return Verdict(FAIL, hint)
    return Verdict(FAIL, mismatch("rslora_scaling", _RS_CASES, got, [a / math.sqrt(r) for a, r in _RS_CASES])
                   + " It is alpha / sqrt(r).")


def check_rslora_scaling(fn: Callable) -> Callable:
    from ..variants import rslora_scaling

    return report("rslora_scaling", lambda: _rslora_verdict(fn), fn, rslora_scaling,
                  "lora_scratch.variants.rslora_scaling")


# ---------------------------------------------------------------- dora_weight(W, A, B, m, scaling)


def _dora_case():
    g = torch.Generator().manual_seed(10)
    n_in, n_out, r = 7, 4, 2  # out != in: a norm over the wrong dimension gives the wrong shape or values
    W, A = torch.randn(n_out, n_in, generator=g), torch.randn(r, n_in, generator=g)
    B = torch.randn(n_out, r, generator=g)
    m = torch.rand(n_out, generator=g) + 0.5
    return W, A, B, m, 1.5


def _dora_mistakes(W, A, B, m, s) -> list[tuple[torch.Tensor, str]]:
    V = W + s * B @ A
    return [
        (m[:, None] * V, "you forgot to divide by the norm: the direction V / ||V||_c must have unit rows."),
        (V / V.norm(dim=1, keepdim=True), "you returned the unit direction only; multiply each row by m."),
        (m[:, None] * (W + B @ A) / (W + B @ A).norm(dim=1, keepdim=True),
         "you forgot the scaling: V = W + scaling · B @ A."),
        (V, "you returned W + scaling · B @ A, plain LoRA; DoRA rescales each row to length m."),
        (m[:, None] * V / V.norm(), "you divided by one norm of the whole matrix; ||·||_c is one norm per output "
                                    "row: V.norm(dim=1, keepdim=True)."),
        (m[:, None] * W / W.norm(dim=1, keepdim=True), "you normalised W without the update; V = W + scaling · B @ A."),
    ]


def _dora_error_hint(problem: Verdict) -> Verdict:
    if "cannot be multiplied" in problem.message:  # A @ B instead of B @ A
        return Verdict(FAIL, f"{problem.message} — the update is B @ A: B is (out, r), A is (r, in).")
    if "dimension" in problem.message or "size" in problem.message or "shape" in problem.message:
        return Verdict(FAIL, f"{problem.message} — the norm and m are one per output feature, shape (out,): dim=1 "
                             "of the (out, in) weight; use .unsqueeze(1) (or keepdim=True, m[:, None]) so that "
                             "each row is divided and scaled by its own.")
    return problem


def _dora_grad_is_detached(fn: Callable, case) -> bool | None:
    """The §4.3 contract: the gradient sees ||V||_c as a constant. None: no gradient reaches B at all."""
    W, A, B, m, s = case
    B1 = B.clone().requires_grad_(True)
    out = fn(W.clone(), A.clone(), B1, m.clone(), s)
    if not out.requires_grad:
        return None
    out.pow(2).sum().backward()
    V = W + s * B @ A
    B2 = B.clone().requires_grad_(True)
    (m[:, None] * (W + s * B2 @ A) / V.norm(dim=1, keepdim=True)).pow(2).sum().backward()
    return B1.grad is not None and torch.allclose(B1.grad, B2.grad, atol=1e-5)


def _dora_verdict(fn: Callable) -> Verdict:
    case = _dora_case()
    value, problem = call_with_copies(fn, case, ("W", "A", "B", "m", "scaling"))
    if problem:
        return _dora_error_hint(problem)
    W, A, B, m, s = case
    if not isinstance(value, torch.Tensor):
        return Verdict(FAIL, f"return a tensor (the adapted weight), got {describe(value)}{none_hint(value)}.")
    if value.shape != W.shape:
        return Verdict(FAIL, f"the adapted weight must have W's shape {tuple(W.shape)} (out, in), got "
                             f"{tuple(value.shape)}. The norm ||V||_c is one per output feature (dim=1).")
    problem = device_dtype_problem(value, W, "the adapted weight")
    if problem:
        return problem
    V = W + s * B @ A
    expected = m[:, None] * V / V.norm(dim=1, keepdim=True)
    if not torch.allclose(value, expected, atol=1e-5):
        if torch.allclose(value, m[:, None] * V / V.norm(dim=0, keepdim=True), atol=1e-5):
            return Verdict(FAIL, "norm over the wrong dimension: DoRA's ||·||_c is one norm per output feature "
                                 "(Liu et al., 2024, §4.1). PyTorch stores a weight as (out, in), so each output "
                                 "feature is a row: V.norm(dim=1, keepdim=True), not dim=0 (one norm per input "
                                 "column).")
        for wrong, hint in _dora_mistakes(*case):
            if torch.allclose(value, wrong, atol=1e-5):
                return Verdict(FAIL, hint)
        return Verdict(FAIL, "the values are wrong: W' = m · V / ||V||_c with V = W + scaling · B @ A, rows normed.")
    detached, problem = call_safely(_dora_grad_is_detached, fn, case)
    if not problem and detached is None:
        return Verdict(FAIL, "the values are right, but no gradient reaches B: you detached too much. Detach only "
                             "the norm, V.norm(dim=1).detach(); V = W + scaling · B @ A must keep its gradient.")
    if problem or not detached:
        return Verdict(FAIL, "the values are right, but the gradient flows through the norm. DoRA §4.3 treats "
                             "||V||_c as a constant: divide by V.norm(dim=1).detach().")
    return Verdict(PASS, "correct: each row of W + scaling · BA rescaled to length m, the norm detached (§4.3).")


def check_dora_weight(fn: Callable) -> Callable:
    from ..variants import dora_weight

    return report("dora_weight", lambda: _dora_verdict(fn), fn, dora_weight, "lora_scratch.variants.dora_weight")


# ---------------------------------------------------------------- pissa_factors(W, r, scaling)


def _pissa_hint(got: torch.Tensor, U_r: torch.Tensor, S_r: torch.Tensor, Vh: torch.Tensor, s: float) -> str:
    """Name the mistake behind a wrong scaling · B @ A (got) when the shapes are right."""
    r = S_r.numel()
    mistakes = [
        (U_r @ torch.diag(S_r) @ Vh.mT[:r], "your V_r^T is V's first r rows, not Vh's: torch.svd returns V (not V^T); "
                                            "use torch.linalg.svd, whose third result Vh is already V^T."),
        (U_r @ torch.diag(S_r / s) @ Vh[:r], "the scaling is applied twice: take sqrt(S_r / scaling) in each factor "
                                             "(not sqrt(S_r) / scaling)."),
        (U_r @ torch.diag(S_r ** 2 / s) @ Vh[:r], "you forgot the square root: each factor gets sqrt(S_r / scaling), "
                                                  "so that the two together give S_r / scaling."),
    ]
    for wrong, hint in mistakes:
        if torch.allclose(got, wrong, atol=1e-4):
            return hint
    return "scaling · B @ A must equal U_r diag(S_r) V_r^T, the best rank-r part of W."


def _pissa_verdict(fn: Callable) -> Verdict:
    g = torch.Generator().manual_seed(11)
    W, r, s = torch.randn(9, 6, generator=g), 2, 4.0
    value, problem = call_with_copies(fn, (W, r, s), ("W", "r", "scaling"))
    if problem:
        return problem
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(t, torch.Tensor) for t in value)):
        return Verdict(FAIL, f"return the pair (A, B) of two tensors, got {describe(value)}{none_hint(value)}.")
    A, B = value
    problem = device_dtype_problem(A, W, "A") or device_dtype_problem(B, W, "B")
    if problem:
        return problem
    if (tuple(A.shape), tuple(B.shape)) == ((9, r), (r, 6)):
        return Verdict(FAIL, "you returned (B, A); return (A, B): A (r, in), B (out, r).")
    if (tuple(A.shape), tuple(B.shape)) != ((r, 6), (9, r)):
        return Verdict(FAIL, f"for W (9, 6) and r = 2, A is (2, 6) and B is (9, 2); got {tuple(A.shape)} and "
                             f"{tuple(B.shape)}. Take the first r columns of U and the first r rows of Vh.")
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    top = U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]
    product = B @ A
    if torch.allclose(product, top, atol=1e-4):
        return Verdict(FAIL, "B @ A is the top-r part itself, but the layer multiplies it by scaling: divide the "
                             "singular values by scaling before splitting them (sqrt(S / scaling) on each side).")
    bottom = U[:, -r:] @ torch.diag(S[-r:]) @ Vh[-r:]
    if torch.allclose(s * product, bottom, atol=1e-4):
        return Verdict(FAIL, "you took the smallest singular values; PiSSA takes the top r (S is sorted descending).")
    if not torch.allclose(s * product, top, atol=1e-4):
        return Verdict(FAIL, _pissa_hint(s * product, U[:, :r], S[:r], Vh, s))
    if not torch.allclose(B.norm(dim=0), A.norm(dim=1), atol=1e-4):
        return Verdict(FAIL, "the product is right, but the singular values all sit in one factor; PiSSA splits "
                             "them: sqrt(S_r / scaling) in A and in B, so both start at the same size.")
    return Verdict(PASS, "correct: A = diag(sqrt(S_r/s)) V_r^T, B = U_r diag(sqrt(S_r/s)); s · BA is W's top-r part.")


def check_pissa_factors(fn: Callable) -> Callable:
    from ..variants import pissa_factors

    return report("pissa_factors", lambda: _pissa_verdict(fn), fn, pissa_factors, "lora_scratch.variants.pissa_factors")


# ---------------------------------------------------------------- loraplus_param_groups(model, lr, ratio)


def _lora_model():
    from ..gpt import GPT, GPTConfig
    from ..lora import add_lora, mark_only_lora_as_trainable

    torch.manual_seed(0)  # a fixed model; report() puts the learner's RNG back afterwards
    model = add_lora(GPT(GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=8)), ["q_proj", "v_proj"], r=2)
    mark_only_lora_as_trainable(model)
    return model


def _groups_verdict(fn: Callable) -> Verdict:
    model = _lora_model()
    value, problem = call_safely(fn, model, 1e-3, 16.0)
    if problem:
        return problem
    if not (isinstance(value, (list, tuple)) and all(isinstance(gr, dict) and "params" in gr for gr in value)):
        return Verdict(FAIL, "return a list of optimizer groups: dicts like {'params': [...], 'lr': ..., "
                             f"'lr_scale': ...}}; got {describe(value)}{none_hint(value)}.")
    if any(not isinstance(gr["params"], (list, tuple)) for gr in value):
        return Verdict(FAIL, "make each group's 'params' a list, [p for n, p in ...], not a generator: a generator is "
                             "used up after one pass, and the optimizer and the cells below read the groups again.")
    ids = {"A": {id(p) for n, p in model.named_parameters() if n.endswith("lora_A")},
           "B": {id(p) for n, p in model.named_parameters() if n.endswith("lora_B")}}
    found = [{id(p) for p in gr["params"]} for gr in value]
    if any(not f <= ids["A"] | ids["B"] for f in found):
        return Verdict(FAIL, "a group holds tensors that are not the model's own lora_A or lora_B parameters (the "
                             "frozen base, or copies made by .to(), .double() or .clone()?). "
                             "Pick them by name: n.endswith('lora_A') and n.endswith('lora_B').")
    by_kind = {k: [gr for gr, f in zip(value, found) if f == ids[k]] for k in ids}
    if len(value) != 2 or not by_kind["A"] or not by_kind["B"]:
        return Verdict(FAIL, "make exactly two groups: one with every lora_A, one with every lora_B.")
    a, b = by_kind["A"][0], by_kind["B"][0]
    scale_a, scale_b = as_number(a.get("lr_scale", 1.0)), as_number(b.get("lr_scale", 1.0))
    lr_a, lr_b = as_number(a.get("lr", 1e-3)), as_number(b.get("lr", 16e-3))
    if None in (scale_a, scale_b, lr_a, lr_b):
        return Verdict(FAIL, "each group's 'lr' and 'lr_scale' must be numbers (floats).")
    if math.isclose(scale_a, 16.0) and math.isclose(scale_b, 1.0):
        return Verdict(FAIL, "the ratio is on A; LoRA+ gives B the larger learning rate (lr_B = ratio × lr_A).")
    if not (math.isclose(scale_a, 1.0) and math.isclose(scale_b, 16.0)):
        return Verdict(FAIL, "set 'lr_scale': 1 on the A group and 'lr_scale': ratio on the B group: the training "
                             "loop multiplies its scheduled lr by each group's lr_scale.")
    if not (math.isclose(lr_a, 1e-3) and math.isclose(lr_b, 16e-3)):
        return Verdict(FAIL, "the 'lr' entries should be lr for A and lr × ratio for B.")
    return Verdict(PASS, "correct: every lora_A at lr, every lora_B at ratio × lr (LoRA+), nothing else.")


def check_loraplus_param_groups(fn: Callable) -> Callable:
    from ..variants import loraplus_param_groups

    return report("loraplus_param_groups", lambda: _groups_verdict(fn), fn, loraplus_param_groups,
                  "lora_scratch.variants.loraplus_param_groups")
