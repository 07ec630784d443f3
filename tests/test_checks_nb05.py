"""Checkers of 05_lora_layer_from_scratch."""
import math

import torch
from checklib import generic_tests, run

from lora_scratch import checks
from lora_scratch.toy import init_lora, lora_forward, merged_weight


def both_zero(n_in, n_out, r):
    return torch.zeros(r, n_in), torch.zeros(n_out, r)


def a_zero(n_in, n_out, r):
    return torch.zeros(r, n_in), torch.randn(n_out, r)


def both_random(n_in, n_out, r):
    return torch.randn(r, n_in), torch.randn(n_out, r)


def transposed(n_in, n_out, r):
    return torch.randn(n_in, r), torch.zeros(r, n_out)


def constant_a(n_in, n_out, r):
    return torch.full((r, n_in), 0.1), torch.zeros(n_out, r)


def gaussian_a(n_in, n_out, r):  # the paper's wording ("random Gaussian") is accepted too
    return torch.randn(r, n_in) / math.sqrt(n_in), torch.zeros(n_out, r)


def uninitialised_a(n_in, n_out, r):  # torch.empty without an init: whatever was in memory (here: tiny)
    return torch.full((r, n_in), 1e-30) * torch.arange(1, n_in + 1), torch.zeros(n_out, r)


def nan_a(n_in, n_out, r):
    return torch.full((r, n_in), float("nan")), torch.zeros(n_out, r)


def init_lora_float64(n_in, n_out, r):
    """Right values, but float64: x (float32) @ A.T fails in the next cell."""
    return tuple(t.double() for t in init_lora(n_in, n_out, r))


def forward_mm(x, W, b, A, B, alpha, r):  # torch.mm: fine for 2-D x, fails on (2, 3, in)
    return torch.mm(x, W.T) + b + alpha / r * torch.mm(torch.mm(x, A.T), B.T)


def forward_clobbers_x(x, W, b, A, B, alpha, r):
    out = lora_forward(x, W, b, A, B, alpha, r)
    x.zero_()
    return out


def forward(scale, bias=True, base=True):
    def fn(x, W, b, A, B, alpha, r):
        out = x @ A.T @ B.T * scale(alpha, r)
        return out + (x @ W.T if base else 0) + (b if bias and base else 0)
    return fn


def merge(scale, sign=1.0):
    return lambda W, A, B, alpha, r: W + sign * scale(alpha, r) * (B @ A)


def merge_in_place(W, A, B, alpha, r):
    W += alpha / r * (B @ A)
    return W


CASES = {
    checks.check_init_lora: {
        "reference": init_lora,
        "mistakes": [
            (both_zero, "training never starts"),
            (a_zero, "the other way round"),
            (both_random, "does not start where the base model was"),
            (transposed, "transposed"),
            (lambda i, o, r: init_lora(i, o, r)[::-1], "you returned (B, A)"),
            (constant_a, "A must be random"),
            (uninitialised_a, "A looks uninitialised"),
            (nan_a, "A looks uninitialised"),
            (lambda i, o, r: torch.zeros(r, i), "return the pair (A, B)"),
            (lambda i, o, r: (torch.zeros(r, i + 1), torch.zeros(o, r)), "should give A (3, 12)"),
            (lambda i, o, r: (torch.ones(r, i, dtype=torch.long), torch.zeros(o, r, dtype=torch.long)), "float"),
            (init_lora_float64, "x @ A.T below would fail"),  # was a false ✅: notebook 05 then fails at x @ A.T
        ],
    },
    checks.check_lora_forward: {
        "reference": lora_forward,
        "mistakes": [
            (forward(lambda a, r: 1.0), "forgot the scaling"),
            (forward(lambda a, r: a // r), "alpha // r"),
            (forward_mm, "torch.mm takes 2-D matrices only"),
            (forward_clobbers_x, "changed its input x in place"),
            (forward(lambda a, r: a), "alpha only"),
            (forward(lambda a, r: r / a), "r / alpha"),
            (forward(lambda a, r: a / r, bias=False), "forgot the bias"),
            (forward(lambda a, r: a / r, base=False), "only the LoRA path"),
            (forward(lambda a, r: 0.0), "only the frozen layer"),
            (lambda x, W, b, A, B, alpha, r: x @ W.T + b + alpha / r * (x @ B @ A), "check the order"),
            (lambda x, W, b, A, B, alpha, r: (x @ W.T + b + alpha / r * (x @ A.T @ B.T)).sum(-1), "(…, out)"),
            (lambda *args: lora_forward(*args) + 1.0, "the values are wrong"),
            (lambda *args: 3.0, "return a torch.Tensor"),
        ],
    },
    checks.check_merged_weight: {
        "reference": merged_weight,
        "mistakes": [
            (merge(lambda a, r: 1.0), "forgot the scaling"),
            (merge(lambda a, r: a // r), "alpha // r"),
            (merge(lambda a, r: a), "alpha only"),
            (merge(lambda a, r: r / a), "r / alpha"),
            (merge(lambda a, r: a / r, sign=-1.0), "subtracted"),
            (lambda W, A, B, alpha, r: alpha / r * (B @ A), "only ΔW"),
            (lambda W, A, B, alpha, r: W + alpha / r * (A @ B), "check the order"),
            (lambda W, A, B, alpha, r: (W + alpha / r * (B @ A)).T, "W's shape"),
            (merge_in_place, "changed W in place"),
            (lambda W, A, B, alpha, r: W * 2, "the values are wrong"),
            (lambda W, A, B, alpha, r: [1.0], "return a torch.Tensor"),
        ],
    },
}

# the three tests every checker gets: reference ✅, stub ⏳, each typical mistake ❌ with its hint
test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)


def test_gaussian_a_is_accepted(capsys):
    assert run(capsys, checks.check_init_lora, gaussian_a)[1].startswith(checks.PASS)


def test_checker_output_is_deterministic(capsys):
    for checker, fn in [(checks.check_init_lora, init_lora), (checks.check_lora_forward, forward(lambda a, r: a))]:
        outputs = [run(capsys, checker, fn)[1] for _ in range(2)]
        assert outputs[0] == outputs[1]


def test_float64_init_lora_would_break_the_next_cell():
    """What the ❌ for float64 A and B protects: the cell after the check computes x @ A.T with a float32 x."""
    import pytest

    A, _ = init_lora_float64(8, 6, 2)
    with pytest.raises(RuntimeError):
        torch.randn(5, 8) @ A.T
