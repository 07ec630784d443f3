"""Checkers for 08_merge_save_serve: merged_linear, storage_bytes, speedup_ratio.

Each one calls the learner's function on known inputs and, when the answer is wrong, compares it with
the typical mistakes (written out below) to name the one the learner made.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from .answers import all_close, device_dtype_problem, first_wrong, mismatch, none_hint, numbers_from, same, shown
from .core import FAIL, PASS, Verdict, call_safely, describe, report

# ---- merged_linear(layer) -------------------------------------------------------------------------


def _lora_layer(dtype: torch.dtype = torch.float32, device: str = "cpu") -> nn.Module:
    from ..lora import LoRALinear

    torch.manual_seed(0)  # a fixed layer; report() puts the learner's RNG back afterwards
    # (out, in) = (5, 3) and r = 2: not square, so swapped shapes fail loudly; B non-zero, as after training
    layer = LoRALinear(nn.Linear(3, 5, dtype=dtype, device=device), r=2, alpha=4.0).eval()
    with torch.no_grad():
        layer.lora_B.normal_()
    return layer


def _merged_linear_raised(problem: Verdict) -> Verdict:
    if "mat1 and mat2" in problem.message or "shapes cannot be multiplied" in problem.message:
        return Verdict(FAIL, "the shapes do not fit: W is (out, in), B is (out, r), A is (r, in), so ΔW = B @ A "
                             f"(not A @ B). Your function raised: {problem.message}")
    if "must match the size" in problem.message:
        return Verdict(FAIL, "the new layer's weight has the wrong shape: nn.Linear takes (in_features, "
                             f"out_features) and stores weight as (out, in). Your function raised: {problem.message}")
    return problem


def _merged_values_problem(got: nn.Linear, layer: nn.Module, W: torch.Tensor) -> Verdict | None:
    b, A, B, s = layer.base.bias.detach(), layer.lora_A.detach(), layer.lora_B.detach(), layer.scaling
    near = lambda t: torch.allclose(got.weight, t, atol=1e-5)  # noqa: E731
    wrong = [(W + B @ A, "you forgot the scaling: the update is scaling · B @ A (scaling = alpha / r)."),
             (W + B @ A / s, "you divided by the scaling; multiply: W + scaling · B @ A."),
             (W + layer.lora_alpha * B @ A, "you multiplied by alpha; the scaling is alpha / r, stored as "
                                            "layer.scaling."),
             (s * B @ A, "the weight holds only ΔW; the merged weight is W + ΔW."),
             (W, "the weight is still W0: add the update scaling · B @ A.")]
    if not near(W + s * B @ A):
        return next((Verdict(FAIL, hint) for t, hint in wrong if near(t)),
                    Verdict(FAIL, "the merged weight should be W + scaling · (B @ A); yours differs."))
    if got.bias is None or not torch.equal(got.bias, b):
        return Verdict(FAIL, "copy the base layer's bias too: the merged layer computes W x + b with the same b "
                             "(a new nn.Linear starts with a random bias).")
    return None


def _other_layers_problem(fn: Callable) -> Verdict | None:
    """Right for a float32 layer on the CPU: the merged layer must also keep a float64 layer's dtype and a layer's
    device (the meta device stands in for a GPU), as the notebook's DEVICE switch and bf16 models need."""
    for dtype, device, kind in ((torch.float64, "cpu", "a float64 LoRA layer"),
                                (torch.float32, "meta", "a LoRA layer on another device (meta, standing in for "
                                                        "a GPU)")):
        layer = _lora_layer(dtype, device)
        got, problem = call_safely(fn, layer)
        if problem:
            return Verdict(FAIL, f"right for a float32 layer on the CPU, but for {kind}, {problem.message} — build "
                                 "the new Linear where the base is: dtype=layer.base.weight.dtype, "
                                 "device=layer.base.weight.device.")
        if not isinstance(got, nn.Linear):
            return Verdict(FAIL, f"for {kind} your function returned {describe(got)}; return an nn.Linear.")
        weight = got.weight
        if (weight.dtype, weight.device) != (layer.base.weight.dtype, layer.base.weight.device):
            return Verdict(FAIL, f"right for a float32 layer on the CPU, but for {kind} your merged layer is "
                                 f"{weight.dtype} on {weight.device}: nn.Linear(...) alone builds float32 on the CPU. "
                                 "Pass dtype=layer.base.weight.dtype, device=layer.base.weight.device, so that a "
                                 "bf16 or GPU model stays bf16 or on the GPU.")
    return None


def _merged_linear_verdict(fn: Callable) -> Verdict:
    from ..lora import LoRALinear

    layer = _lora_layer()
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    got, problem = call_safely(fn, layer)
    if problem:
        return _merged_linear_raised(problem)
    if not same(before, {n: p.detach() for n, p in layer.named_parameters()}) or layer.merged:
        return Verdict(FAIL, "you changed the LoRA layer itself (merge() or += on its base weight). Build a new "
                             "nn.Linear and copy the merged weight into it; the adapter must stay usable.")
    if isinstance(got, LoRALinear) or not isinstance(got, nn.Linear):
        return Verdict(FAIL, f"return a plain torch.nn.Linear(in_features, out_features), got "
                             f"{describe(got)}{none_hint(got)}.")
    W = before["base.weight"]
    if got.weight.shape != W.shape:
        return Verdict(FAIL, f"the Linear's weight should have W's shape {tuple(W.shape)} (out, in), got "
                             f"{tuple(got.weight.shape)}: nn.Linear takes (in_features, out_features).")
    problem = device_dtype_problem(got.weight.detach(), W, "the merged layer's weight")
    problem = problem or _merged_values_problem(got, layer, W) or _other_layers_problem(fn)
    return problem or Verdict(PASS, "correct: a plain Linear computing (W0 + (alpha / r) · B A) x + b; the LoRA layer "
                                    "is untouched.")


def check_merged_linear(fn: Callable) -> Callable:
    from ..serve import merged_linear

    return report("merged_linear", lambda: _merged_linear_verdict(fn), fn, merged_linear,
                  "lora_scratch.serve.merged_linear")


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
        return Verdict(FAIL, "you stored a base copy for every tenant; the base is frozen and shared by all of "
                             "them, so it is stored once.")
    if fits(lambda nb, na, n, b: n * nb * b):
        return Verdict(FAIL, "that is N full copies of the model (full fine-tuning). With LoRA the base is "
                             "stored once and each tenant adds only its adapter.")
    if fits(lambda nb, na, n, b: (nb + na) * b):
        return Verdict(FAIL, "you counted one adapter; every tenant has its own: n_tenants · n_adapter.")
    if fits(lambda nb, na, n, b: nb + n * na):
        return Verdict(FAIL, "that is a number of parameters; multiply by bytes_per_param to get bytes.")
    return Verdict(FAIL, mismatch("storage_bytes", STORAGE_CASES, got, [(nb + n * na) * b for nb, na, n, b in
                                                                      STORAGE_CASES]))


def check_storage_bytes(fn: Callable) -> Callable:
    from ..serve import storage_bytes

    return report("storage_bytes", lambda: _storage_verdict(fn), fn, storage_bytes, "lora_scratch.serve.storage_bytes")


# ---- speedup_ratio(times_a, times_b) ------------------------------------------------------------

# one slow round in each list (another job on the machine): the mean moves, a robust estimator does not
SPEED_CASES = [([1.0, 1.1, 0.9, 1.0, 9.0], [2.0, 2.1, 1.9, 2.0, 2.2]),
               ([3.0, 3.0, 3.1, 2.9, 3.0], [1.5, 1.6, 1.4, 1.5, 6.0])]
TYPICAL = [2.0, 0.5]  # the speedup of A without the slow rounds: any robust estimator lands near these
ROBUST_TOLERANCE = 0.15  # relative; the mean misses by 60 % and more here


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return (s[len(s) // 2] + s[(len(s) - 1) // 2]) / 2


def _robust(got: list[float]) -> bool:
    return all(abs(g / t - 1) < ROBUST_TOLERANCE for g, t in zip(got, TYPICAL))


def _speed_verdict(fn: Callable) -> Verdict:
    got, problem = numbers_from(fn, [(list(a), list(b)) for a, b in SPEED_CASES], "speedup_ratio")
    if problem:
        return problem
    fits = lambda f: all_close(got, [f(a, b) for a, b in SPEED_CASES])  # noqa: E731
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    if fits(lambda a, b: _median(b) / _median(a)):
        return Verdict(PASS, "correct: median(B) / median(A), robust to a slow round.")
    inverted = all(abs(g * t - 1) < ROBUST_TOLERANCE for g, t in zip(got, TYPICAL))  # near 1 / the typical speedup
    if inverted or fits(lambda a, b: _median(a) / _median(b)):
        return Verdict(FAIL, "inverted: A twice as fast as B means A's times are half of B's, so the speedup is "
                             "B's typical time / A's typical time.")
    if fits(lambda a, b: mean(b) / mean(a)) or fits(lambda a, b: mean(a) / mean(b)):
        return Verdict(FAIL, "you used means: one slow round (another job on the machine) drags a mean; "
                             "use an estimator a slow round cannot move, such as the median of each list.")
    if _robust(got):
        return Verdict(PASS, "correct: robust to a slow round (the course's reference takes median(B) / median(A); "
                             "yours lands as close to the typical speedup, and that is what counts).")
    want = [_median(b) / _median(a) for a, b in SPEED_CASES]
    wrong = first_wrong(got, want)
    (a, b), (shown_got, shown_want) = SPEED_CASES[wrong], shown(got[wrong], want[wrong])
    return Verdict(FAIL, f"for times_a = {a} and times_b = {b} the speedup of A is {shown_want}; your function "
                         f"returned {shown_got}.")


def check_speedup_ratio(fn: Callable) -> Callable:
    from ..bench import speedup_ratio

    return report("speedup_ratio", lambda: _speed_verdict(fn), fn, speedup_ratio, "lora_scratch.bench.speedup_ratio")
