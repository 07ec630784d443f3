"""Checkers of 10_lora_variants_and_analysis."""
import math

import torch
from checklib import generic_tests, run

from lora_scratch import checks
from lora_scratch.variants import dora_weight, loraplus_param_groups, pissa_factors, rslora_scaling


def dora(norm_dim=1, detach=True, scale=True, magnitude=True, normalise=True):
    def fn(W, A, B, m, s):
        V = W + (s if scale else 1.0) * B @ A
        norm = V.norm(dim=norm_dim, keepdim=True)
        norm = norm.detach() if detach else norm
        out = V / norm if normalise else V
        return m[:, None] * out if magnitude else out
    return fn


def pissa(split=True, divide=True, bottom=False, swap=False, root=torch.sqrt, old_svd=False):
    def fn(W, r, s):
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        Vh = Vh.mT if old_svd else Vh  # torch.svd's third result is V, not V^T
        idx = slice(-r, None) if bottom else slice(0, r)
        Sr = S[idx] / (s if divide else 1.0)
        if split:
            A, B = root(Sr)[:, None] * Vh[idx], U[:, idx] * root(Sr)
        else:
            A, B = Vh[idx], U[:, idx] * Sr
        return (B, A) if swap else (A, B)
    return fn


def groups(kind="right"):
    def fn(model, lr, ratio):
        a = [p for n, p in model.named_parameters() if n.endswith("lora_A")]
        b = [p for n, p in model.named_parameters() if n.endswith("lora_B")]
        if kind == "swapped":
            return [{"params": a, "lr": lr * ratio, "lr_scale": ratio}, {"params": b, "lr": lr, "lr_scale": 1.0}]
        if kind == "no_scale":
            return [{"params": a, "lr": lr}, {"params": b, "lr": lr * ratio}]
        if kind == "everything":
            rest = [p for n, p in model.named_parameters() if "lora_" not in n]
            return [{"params": a + rest, "lr": lr, "lr_scale": 1.0}, {"params": b, "lr": lr * ratio, "lr_scale": ratio}]
        if kind == "generator":
            return [{"params": iter(a), "lr": lr, "lr_scale": 1.0}, {"params": iter(b), "lr": lr * ratio,
                                                                        "lr_scale": ratio}]
        if kind == "one_group":
            return [{"params": a + b, "lr": lr, "lr_scale": 1.0}]
        return {"A": a, "B": b}
    return fn


CASES = {
    checks.check_rslora_scaling: {
        "reference": rslora_scaling,
        "mistakes": [
            (lambda a, r: a / r, "plain LoRA's scaling"),
            (lambda a, r: a * math.sqrt(r), "you multiplied by sqrt(r)"),
            (lambda a, r: math.sqrt(a / r), "square root of alpha / r"),
            (lambda a, r: math.sqrt(r) / a, "upside down"),
            (lambda a, r: a / r ** 2, "r squared"),
            (lambda a, r: a, "rslora_scaling(16, 4) should be 8; your function returned 16. It is alpha / sqrt(r)."),
            (lambda a, r: [a], "return one number"),
            (lambda a, r: a / r ** 1 / 2, "** binds first"),
            (lambda a, r: a // math.sqrt(r), "you rounded down"),
            (lambda a, r: a / torch.sqrt(r), "r is a Python int"),
            (lambda a, r: float(int(a / math.sqrt(r))), "you rounded down"),
        ],
    },
    checks.check_dora_weight: {
        "reference": dora_weight,
        "mistakes": [
            (dora(norm_dim=0), "norm over the wrong dimension"),
            (lambda W, A, B, m, s: m * (W + s * B @ A) / (W + s * B @ A).norm(dim=1), "one per output feature"),
            (dora(detach=False), "detach"),
            (dora(scale=False), "forgot the scaling"),
            (dora(magnitude=False), "multiply each row by m"),
            (dora(normalise=False), "forgot to divide by the norm"),
            (lambda W, A, B, m, s: W + s * B @ A, "plain LoRA"),
            (lambda W, A, B, m, s: m[:, None] * W / W.norm(dim=1, keepdim=True), "without the update"),
            (lambda W, A, B, m, s: dora_weight(W, A, B, m, s).T, "W's shape"),
            (lambda W, A, B, m, s: dora_weight(W, A, B, m, s) * 2, "the values are wrong"),
            (lambda W, A, B, m, s: 1.0, "return a tensor"),
            (lambda W, A, B, m, s: m[:, None] * (W + s * B @ A) / (W + s * B @ A).norm(), "of the whole matrix"),
            (lambda W, A, B, m, s: dora_weight(W, A, s * B, m, 1.0).detach(), "detached too much"),
            (lambda W, A, B, m, s: dora_weight(W, B, A, m, s), "the update is B @ A"),
            (lambda W, A, B, m, s: m * (W + s * B @ A) / (W + s * B @ A).norm(dim=1, keepdim=True), "m[:, None]"),
        ],
    },
    checks.check_pissa_factors: {
        "reference": pissa_factors,
        "mistakes": [
            (pissa(divide=False), "divide the singular values by scaling"),
            (pissa(bottom=True), "smallest singular values"),
            (pissa(split=False), "split"),
            (pissa(swap=True), "you returned (B, A)"),
            (pissa(old_svd=True), "torch.svd returns V"),
            (pissa(divide=False, root=lambda t: t.sqrt() / 4.0), "scaling is applied twice"),
            (pissa(root=lambda t: t), "forgot the square root"),
            (lambda W, r, s: (torch.zeros(r, W.shape[1]), torch.zeros(W.shape[0], r)), "best rank-r part"),
            (lambda W, r, s: (torch.zeros(W.shape[1], r), torch.zeros(r, W.shape[0])), "A is (2, 6)"),
            (lambda W, r, s: torch.zeros(3), "return the pair (A, B)"),
        ],
    },
    checks.check_loraplus_param_groups: {
        "reference": loraplus_param_groups,
        "mistakes": [
            (groups("swapped"), "the ratio is on A"),
            (groups("no_scale"), "lr_scale"),
            (groups("everything"), "not the model's own lora_A or lora_B"),
            (groups("one_group"), "exactly two groups"),
            (groups("dict"), "return a list of optimizer groups"),
            (groups("generator"), "not a generator"),
        ],
    },
}

# the three tests every checker gets: reference ✅, stub ⏳, each typical mistake ❌ with its hint
test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)


def test_checker_output_is_deterministic(capsys):
    for checker, fn in [(checks.check_dora_weight, dora(norm_dim=0)), (checks.check_pissa_factors, pissa_factors)]:
        outputs = [run(capsys, checker, fn)[1] for _ in range(2)]
        assert outputs[0] == outputs[1]


def test_dora_in_place_edit_fails_and_does_not_poison_the_checker(capsys):
    def in_place(W, A, B, m, s):
        W += s * B @ A
        return m[:, None] * W / W.norm(dim=1, keepdim=True).detach()
    out = run(capsys, checks.check_dora_weight, in_place)[1]
    assert out.startswith(checks.FAIL) and "changed its input W in place" in out, out
    assert run(capsys, checks.check_dora_weight, dora_weight)[1].startswith(checks.PASS)


def test_dora_dimension_hint_carries_what_it_needs(capsys):
    """The hint once sent learners to a file of paper figures that the repository does not have."""
    out = run(capsys, checks.check_dora_weight, dora(norm_dim=0))[1]
    assert "FIGURES" not in out and "V.norm(dim=1, keepdim=True)" in out and "(out, in)" in out, out
