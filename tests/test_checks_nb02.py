"""Checkers of 02_fine_tuning_and_low_rank_updates."""
import pytest
import torch
from checklib import generic_tests, run

from lora_scratch import checks
from lora_scratch.counting import checkpoint_gb
from lora_scratch.linalg import delta_weights, energy_curve, rank_for_share


def _in_place(base, ft, names):
    for n in names:
        ft[n] -= base[n]
    return {n: ft[n] for n in names}


CASES = {
    checks.check_checkpoint_gb: {
        "reference": checkpoint_gb,
        "mistakes": [
            (lambda n, b: n * b / 1e9, "forgot to divide by 8"),
            (lambda n, b: n * b / 8 / 2**30, "GiB"),
            (lambda n, b: n * b / 8, "you returned bytes"),
            (lambda n, b: n * b / 8 / 1e6, "MB"),
            (lambda n, b: n * b * 8 / 1e9, "multiplied by 8"),
            (lambda n, b: n / 8 / 1e9, "left out bits_per_param"),
            (lambda n, b: n / 1e9, "1 byte per parameter"),
            (lambda n, b: f"{n * b / 8e9} GB", "returned a str"),
            (lambda n, b: n * b / 7e9, "checkpoint_gb(1.75e+11, 16) should be 350 GB; your function returned 400 GB"),
        ],
    },
    checks.check_delta_weights: {
        "reference": delta_weights,
        "mistakes": [
            (lambda base, ft, names: {n: base[n] - ft[n] for n in names}, "sign is flipped"),
            (lambda base, ft, names: {n: ft[n] for n in names}, "a weight itself"),
            (lambda base, ft, names: {n: ft[n] - base[n] for n in ft}, "not in `names`"),
            (lambda base, ft, names: {names[0]: ft[names[0]] - base[names[0]]}, "missing"),
            (_in_place, "in place"),
            (lambda base, ft, names: [ft[n] - base[n] for n in names], "return a dict"),
            (lambda base, ft, names: {n: (ft[n] - base[n]).T for n in names}, "no transpose"),
            (lambda base, ft, names: {n: ft[n] - 2 * base[n] for n in names}, "is not W_ft − W_base"),
        ],
    },
    checks.check_rank_for_share: {
        "reference": rank_for_share,
        "mistakes": [
            (lambda S, q: int((torch.cumsum(S, 0) / S.sum() < q).sum()) + 1, "not their squares"),
            (lambda S, q: int((energy_curve(S) < q).sum()), "off by one"),
            (lambda S, q: int((energy_curve(S) <= q).sum()) + 1, "≥ share"),
            (lambda S, q: float(energy_curve(S)[int((energy_curve(S) < q).sum())]), "whole number"),
            (lambda S, q: energy_curve(S), "whole number"),
            (lambda S, q: len(S), "and share 0.5 the answer is 1"),
        ],
    },
}


# the three tests every checker gets: reference ✅, stub ⏳, each typical mistake ❌ with its hint
test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)


def test_references_give_the_published_figures():
    assert checkpoint_gb(175e9, 16) == pytest.approx(350.0)  # GPT-3 175B in fp16 (Hu et al., 2021, §4.2)
    base = {"w": torch.ones(2, 2)}
    ft = {"w": torch.full((2, 2), 3.0)}
    assert torch.equal(delta_weights(base, ft, ["w"])["w"], torch.full((2, 2), 2.0)) and ft["w"][0, 0] == 3.0
    assert rank_for_share(torch.tensor([4.0, 3.0, 2.0, 1.0]), 0.9) == 3  # E(2) = 25/30 < 0.9 ≤ E(3) = 29/30


def test_checker_output_is_deterministic(capsys):
    outputs = [run(capsys, checks.check_delta_weights, lambda b, f, n: {k: b[k] - f[k] for k in n})[1]
               for _ in range(2)]
    assert outputs[0] == outputs[1]
