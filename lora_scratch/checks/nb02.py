"""Checkers for 02_fine_tuning_and_low_rank_updates: checkpoint_gb, delta_weights, rank_for_share.

The references are lora_scratch.counting.checkpoint_gb and lora_scratch.linalg.delta_weights /
rank_for_share (scripts/full_finetune_delta.py uses the same delta_weights).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..counting import GB, checkpoint_gb
from ..linalg import delta_weights, rank_for_share
from .answers import (
    as_whole,
    call_with_copies,
    device_dtype_problem,
    mismatch,
    none_hint,
    numbers_from,
    same,
    whole_problem,
)
from .core import FAIL, PASS, Verdict, call_safely, describe, report

# ---- checkpoint_gb ----

_SIZES = [(175e9, 16), (1_937_920, 32), (7e9, 4)]  # GPT-3 in fp16, the shipped base in fp32, a 4-bit 7B


def _size_mistake(got: list[float]) -> str | None:
    """Name the likely mistake if the learner's answers equal a known wrong formula."""
    wrong = {
        "you forgot to divide by 8: bits_per_param is in bits, and a byte has 8 bits.":
            lambda n, b: n * b / GB,
        "you returned GiB (2**30 bytes); the paper's 350 GB are decimal gigabytes, 10**9 bytes.":
            lambda n, b: n * b / 8 / 2**30,
        "you returned bytes; divide by 10**9 to get GB.": lambda n, b: n * b / 8,
        "you returned MB (10**6 bytes); a GB is 10**9 bytes.": lambda n, b: n * b / 8 / 10**6,
        "you multiplied by 8; bits → bytes is a division by 8.": lambda n, b: n * b * 8 / GB,
        "you left out bits_per_param: the size is n_params × bits_per_param / 8 bytes.":
            lambda n, b: n / 8 / GB,
        "you assumed 1 byte per parameter; use bits_per_param / 8.": lambda n, b: n / GB,
    }
    for hint, f in wrong.items():
        if all(math.isclose(g, f(n, b), rel_tol=1e-6) for g, (n, b) in zip(got, _SIZES)):
            return hint
    return None


def _checkpoint_gb_verdict(fn: Callable) -> Verdict:
    got, problem = numbers_from(fn, _SIZES, "checkpoint_gb", "a float, in GB")
    if problem:
        return problem
    if all(math.isclose(g, checkpoint_gb(n, b), rel_tol=1e-6) for g, (n, b) in zip(got, _SIZES)):
        return Verdict(PASS, "correct: 175e9 parameters × 16 bits / 8 = 350 GB.")
    hint = _size_mistake(got)
    if hint:
        return Verdict(FAIL, hint)
    return Verdict(FAIL, mismatch("checkpoint_gb", _SIZES, got, [checkpoint_gb(n, b) for n, b in _SIZES], " GB"))


def check_checkpoint_gb(fn: Callable) -> Callable:
    return report("checkpoint_gb", lambda: _checkpoint_gb_verdict(fn), fn, checkpoint_gb,
                  "lora_scratch.counting.checkpoint_gb", probe=_SIZES[0])


# ---- delta_weights ----

def _toy_states() -> tuple[dict, dict, list[str]]:
    """A base and a 'fine-tuned' state dict with a weight, a bias and a LayerNorm gain."""
    g = torch.Generator().manual_seed(0)
    base = {"blk.q.weight": torch.randn(4, 3, generator=g), "blk.q.bias": torch.randn(4, generator=g),
            "blk.up.weight": torch.randn(6, 3, generator=g), "ln.weight": torch.ones(3)}
    ft = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in base.items()}
    return base, ft, ["blk.q.weight", "blk.up.weight"]


def _delta_values_verdict(got: dict, base: dict, ft: dict, names: list[str]) -> Verdict:
    for name in names:
        d = got[name]
        if not isinstance(d, torch.Tensor):
            return Verdict(FAIL, f"the value for {name!r} is {describe(d)}; it should be a tensor.")
        if d.shape != base[name].shape:
            return Verdict(FAIL, f"ΔW for {name!r} has shape {tuple(d.shape)}, expected {tuple(base[name].shape)} "
                                 "(the same shape as the weight; no transpose, no flattening).")
        problem = device_dtype_problem(d, base[name], f"ΔW for {name!r}")
        if problem:
            return problem
        d = d.detach()
        if torch.allclose(d, base[name] - ft[name], atol=1e-6):
            return Verdict(FAIL, "the sign is flipped: ΔW = W_ft − W_base (fine-tuned minus base), so that "
                                 "W_base + ΔW = W_ft.")
        if torch.allclose(d, ft[name], atol=1e-6) or torch.allclose(d, base[name], atol=1e-6):
            return Verdict(FAIL, "you returned a weight itself, not the difference W_ft − W_base.")
        if not torch.allclose(d, ft[name] - base[name], atol=1e-6):
            return Verdict(FAIL, f"ΔW for {name!r} is not W_ft − W_base.")
    return Verdict(PASS, "correct: ΔW = W_ft − W_base for each named matrix, inputs untouched.")


def _delta_weights_verdict(fn: Callable) -> Verdict:
    base, ft, names = _toy_states()
    base_copy, ft_copy = ({k: v.clone() for k, v in s.items()} for s in (base, ft))
    got, problem = call_safely(fn, base, ft, list(names))
    if problem:
        return problem
    if not isinstance(got, dict):
        return Verdict(FAIL, f"return a dict {{name: ΔW tensor}}, got {describe(got)}{none_hint(got)}.")
    if not (same(base, base_copy) and same(ft, ft_copy)):
        return Verdict(FAIL, "you changed a state dict in place (e.g. `ft[name] -= base[name]` or `.sub_`): "
                             "the fine-tuned weights are gone. Compute `ft[name] - base[name]`, a new tensor.")
    if set(got) != set(names):
        extra = sorted(set(got) - set(names))
        if extra:
            return Verdict(FAIL, f"you returned entries that are not in `names` (e.g. {extra[0]!r}); keep only "
                                 "the matrices listed in `names` (biases and LayerNorm gains are not adapted).")
        return Verdict(FAIL, f"some names are missing: {sorted(set(names) - set(got))}.")
    return _delta_values_verdict(got, base_copy, ft_copy, names)


def check_delta_weights(fn: Callable) -> Callable:
    return report("delta_weights", lambda: _delta_weights_verdict(fn), fn, delta_weights,
                  "lora_scratch.linalg.delta_weights")


# ---- rank_for_share ----

_CASES = [([4.0, 3.0, 2.0, 1.0], 0.5), ([4.0, 3.0, 2.0, 1.0], 0.9), ([10.0] + [1.0] * 9, 0.9),
          ([3.0, 1.0], 0.9), ([1.0] * 10, 0.95)]  # the 4th reaches 0.9 exactly at r = 1


def _rank_mistake(got: list[int]) -> str | None:
    S_of = [torch.tensor(s, dtype=torch.float64) for s, _ in _CASES]
    unsquared = [int((torch.cumsum(S, 0) / S.sum() < q).sum()) + 1 for S, (_, q) in zip(S_of, _CASES)]
    right = [rank_for_share(S, q) for S, (_, q) in zip(S_of, _CASES)]
    strict = [int((torch.cumsum(S**2, 0) / (S**2).sum() <= q).sum()) + 1 for S, (_, q) in zip(S_of, _CASES)]
    wrong = {
        "you summed the singular values, not their squares: ||M||_F² = Σ s_i², so the energy of a direction "
        "is s_i².": unsquared,
        "off by one: you returned how many prefixes fall *short* of the share; the answer is the first r that "
        "reaches it (one more).": [r - 1 for r in right],
        "you asked for more than the share (>); the smallest r with E(r) ≥ share counts too — S = [3, 1] "
        "reaches 0.9 at r = 1.": strict,
    }
    for hint, values in wrong.items():
        if got == values:
            return hint
    return None


def _rank_for_share_verdict(fn: Callable) -> Verdict:
    got = []
    for values, share in _CASES:
        value, problem = call_with_copies(fn, (torch.tensor(values, dtype=torch.float64), share), ("S", "share"))
        problem = problem or whole_problem(value, f"rank_for_share(S, {share:g})",
                                           "a whole number of directions, an int")
        if problem:
            return problem
        got.append(as_whole(value))
    right = [rank_for_share(torch.tensor(v, dtype=torch.float64), q) for v, q in _CASES]
    if got == right:
        return Verdict(PASS, "correct: the first r whose energy share E(r) = Σ_{i≤r} s_i² / Σ s_i² reaches the share.")
    hint = _rank_mistake(got)
    if hint:
        return Verdict(FAIL, hint)
    i = next(i for i, (g, w) in enumerate(zip(got, right)) if g != w)
    S, share = _CASES[i]
    values = ", ".join(f"{x:g}" for x in S)
    return Verdict(FAIL, f"for S = [{values}] and share {share:g} the answer is {right[i]} (the first r whose E(r) "
                         f"reaches the share); your function returned {got[i]}.")


def check_rank_for_share(fn: Callable) -> Callable:
    probe = (torch.tensor([4.0, 3.0, 2.0, 1.0]), 0.9)
    return report("rank_for_share", lambda: _rank_for_share_verdict(fn), fn, rank_for_share,
                  "lora_scratch.linalg.rank_for_share", probe=probe)
