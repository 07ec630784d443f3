"""Checkers of 08_merge_save_serve."""
import statistics

import torch
from checklib import generic_tests, run

from lora_scratch import checks
from lora_scratch.bench import speedup_ratio
from lora_scratch.serve import merge_weight, storage_bytes


def in_place(W, A, B, s):
    W += s * B @ A
    return W


CASES = {
    checks.check_merge_weight: {
        "reference": merge_weight,
        "mistakes": [
            (lambda W, A, B, s: W + B @ A, "forgot the scaling"),
            (lambda W, A, B, s: W + B @ A / s, "divided by the scaling"),
            (lambda W, A, B, s: s * B @ A, "only ΔW"),
            (lambda W, A, B, s: W + s * A @ B, "not A @ B"),
            (in_place, "in place"),
            (lambda W, A, B, s: (W + s * B @ A).T, "W's shape"),
        ],
    },
    checks.check_storage_bytes: {
        "reference": storage_bytes,
        "mistakes": [
            (lambda nb, na, n, b: n * nb * b, "N full copies"),
            (lambda nb, na, n, b: n * (nb + na) * b, "a base copy for every tenant"),
            (lambda nb, na, n, b: (nb + na) * b, "one adapter"),
            (lambda nb, na, n, b: nb + n * na, "bytes_per_param"),
            (lambda nb, na, n, b: "many", "returned a str"),
        ],
    },
    checks.check_speedup_ratio: {
        "reference": speedup_ratio,
        "mistakes": [
            (lambda a, b: statistics.median(a) / statistics.median(b), "inverted"),
            (lambda a, b: statistics.mean(b) / statistics.mean(a), "means"),
            (lambda a, b: min(b) / min(a), "fastest round"),
            (lambda a, b: 1.0, "returned 1"),
        ],
    },
}

test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)


def test_merge_checker_output_is_deterministic(capsys):
    outputs = [run(capsys, checks.check_merge_weight, lambda W, A, B, s: W + B @ A)[1] for _ in range(2)]
    assert outputs[0] == outputs[1]


def test_storage_reference_matches_the_paper_arithmetic():
    # LoRA §4.2: 100 GPT-3 tasks, 350 GB base + 100 adapters of ~35 MB ≈ 354 GB, not 35 TB
    gb = storage_bytes(175_000_000_000, 18_874_368, 100, 2) / 1e9
    assert 353 < gb < 355
    merged = merge_weight(torch.zeros(2, 2), torch.ones(1, 2), torch.ones(2, 1), 0.5)
    assert torch.equal(merged, torch.full((2, 2), 0.5))
