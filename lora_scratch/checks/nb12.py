"""Checkers for 12_serving_many_adapters: cached_attention, lora_rows.

The checker feeds the learner's function the three calls a generation makes — the prompt (nothing cached yet),
one new token after it, and a chunk of several new tokens after that — and compares each output, and the cache it
leaves, with plain causal attention over the whole sequence. When a value is wrong it tries the typical mistakes
(written out below) to name the one made.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .answers import device_dtype_problem, none_hint, same
from .core import FAIL, PASS, Verdict, call_safely, describe, report

B, NH, HS = 2, 3, 4
CALLS = [("the prompt (4 tokens, nothing cached yet)", 4), ("one new token after 4 cached", 1),
         ("a chunk of 3 new tokens after 5 cached", 3)]


def _sequence() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(12)
    T = sum(n for _, n in CALLS)
    return tuple(torch.randn(B, NH, T, HS, generator=g) for _ in range(3))


def _no_mask(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


def _top_left(q, k, v):  # is_causal=True with a cache: SDPA aligns the mask to the top-left corner
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def _tril_no_shift(q, k, v):
    T, S = q.shape[2], k.shape[2]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(T, S, dtype=torch.bool).tril())


MISTAKES = [
    (_top_left, "with keys cached, is_causal=True is wrong: PyTorch aligns that mask to the top-left corner, so new "
                "token i sees only keys 0..i — the oldest ones — not the cached past. Build the mask yourself: new "
                "token i sits at position past + i and sees keys 0..past + i, "
                "torch.ones(T, past + T, dtype=torch.bool).tril(diagonal=past)."),
    (_tril_no_shift, "your mask is .tril() without the shift: with `past` keys cached, new token i sits at position "
                     "past + i, so use .tril(diagonal=past)."),
    (_no_mask, "right for one new token (it may see everything cached), but with several new tokens at once — the "
               "prompt, or a chunk — each must not see the ones after it: mask with "
               "torch.ones(T, past + T, dtype=torch.bool).tril(diagonal=past) (or is_causal=True when nothing is "
               "cached)."),
]


def _cache_problem(cache, k_all: torch.Tensor, v_all: torch.Tensor, seen: int, what: str) -> Verdict | None:
    if cache.k is None or cache.v is None:
        return Verdict(FAIL, f"after {what} the cache is still empty: store the keys and values — the cached ones "
                             "followed by the new ones — in cache.k and cache.v, so the next call finds them.")
    for name, got, full in (("k", cache.k, k_all), ("v", cache.v, v_all)):
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != (B, NH, seen, HS):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else describe(got)
            return Verdict(FAIL, f"after {what} cache.{name} should be (B, n_head, {seen}, head_size) = "
                                 f"{(B, NH, seen, HS)}: every token seen so far, along dim 2 (time). Yours is "
                                 f"{shape}" + (": concatenate along dim=2, not the last one." if
                                               isinstance(got, torch.Tensor) and got.ndim == 4 and got.shape[2] != seen
                                               else "."))
        if not torch.equal(got, full[:, :, :seen]):
            return Verdict(FAIL, f"after {what} cache.{name} holds other numbers than the keys/values of tokens "
                                 f"0..{seen - 1} in order: the cached ones first, then the new ones "
                                 "(torch.cat([cache.k, k], dim=2)).")
    return None


def _raised(problem: Verdict, what: str) -> Verdict:
    if problem.status != FAIL:  # not done yet: the ⏳ verdict as it is
        return problem
    if "must match except in dimension" in problem.message:
        return Verdict(FAIL, f"for {what} torch.cat failed: {problem.message}. The tensors are (B, n_head, T, "
                             "head_size) and only T differs between the cache and the new tokens: concatenate "
                             "along dim=2.")
    return Verdict(FAIL, f"for {what} {problem.message}")


def _verdict(fn: Callable) -> Verdict:
    from ..kv_cache import LayerCache

    q_all, k_all, v_all = _sequence()
    want_all = F.scaled_dot_product_attention(q_all, k_all, v_all, is_causal=True)  # the whole sequence at once
    cache, start = LayerCache(), 0
    for what, n in CALLS:
        new = slice(start, start + n)
        q, k, v = q_all[:, :, new].clone(), k_all[:, :, new].clone(), v_all[:, :, new].clone()
        got, problem = call_safely(fn, q, k, v, cache)
        if problem:
            return _raised(problem, what)
        if not isinstance(got, torch.Tensor):
            return Verdict(FAIL, f"for {what} it returned {describe(got)}{none_hint(got)}; return the attention "
                                 "output, a tensor (B, n_head, T, head_size).")
        problem = device_dtype_problem(got, q_all, f"for {what} the output")
        if problem:
            return problem
        if not same([q, k, v], [q_all[:, :, new], k_all[:, :, new], v_all[:, :, new]]):
            return Verdict(FAIL, f"for {what} your function changed q, k or v in place (+=, a method ending in _): "
                                 "the layer above still uses them. Build new tensors instead.")
        if tuple(got.shape) != (B, NH, n, HS):
            return Verdict(FAIL, f"for {what} the output should be (B, n_head, T, head_size) = {(B, NH, n, HS)}, "
                                 f"one row per new token; yours is {tuple(got.shape)}.")
        problem = _cache_problem(cache, k_all, v_all, start + n, what)
        if problem:
            return problem
        want = want_all[:, :, new]
        if not torch.allclose(got, want, atol=1e-5):
            k_seen, v_seen = k_all[:, :, :start + n], v_all[:, :, :start + n]
            hint = next((h for m, h in MISTAKES if torch.allclose(got, m(q, k_seen, v_seen), atol=1e-5)), None)
            return Verdict(FAIL, f"for {what}: " + (hint or "the output differs from causal attention over every "
                                                    "token seen so far; each new token must attend to all cached "
                                                    "keys and to the new ones up to itself."))
        start += n
    return Verdict(PASS, "correct: the keys and values are appended along time (dim 2), and new token i attends to "
                         "the past plus the new tokens up to itself — the prompt, one token and a chunk all match "
                         "plain causal attention.")


def check_cached_attention(fn: Callable) -> Callable:
    from ..kv_cache import cached_attention

    return report("cached_attention", lambda: _verdict(fn), fn, cached_attention,
                  "lora_scratch.kv_cache.cached_attention")


# ---- lora_rows(x, A, B, scaling, slots) -> (batch, T, out) ------------------------------------------------------

N_SLOTS, R, IN, OUT, BATCH, T = 4, 2, 5, 3, 5, 2
SLOTS = [2, 0, 3, 2, 1]  # rows for different adapters, one repeated, one for the base (slot 0)


def _stack() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(7)
    A, B = torch.randn(N_SLOTS, R, IN, generator=g), torch.randn(N_SLOTS, OUT, R, generator=g)
    A[0], B[0] = 0.0, 0.0  # slot 0: the base alone
    x = torch.randn(BATCH, T, IN, generator=g)
    return x, A, B, torch.tensor([0.0, 2.0, 0.5, 4.0]), torch.tensor(SLOTS)


def _loop(x, A, B, scaling, slots):  # one row at a time: what the batched version must equal
    return torch.stack([scaling[k] * (x[i] @ A[k].T @ B[k].T) for i, k in enumerate(slots.tolist())])


def _scaling_problem(got: torch.Tensor, x, A, B, scaling, slots) -> Verdict | None:
    """Right products, wrong scaling: each row's answer is a multiple of its unscaled product x A_kᵀ B_kᵀ."""
    unscaled = x @ A[slots].transpose(1, 2) @ B[slots].transpose(1, 2)
    rows = [i for i in range(len(slots)) if unscaled[i].abs().max() > 0]  # slot 0 (the base) is zero anyway
    factors = [float((got[i] * unscaled[i]).sum() / (unscaled[i] ** 2).sum()) for i in rows]
    if not all(torch.allclose(got[i], f * unscaled[i], atol=1e-5) for i, f in zip(rows, factors)):
        return None
    if all(abs(f - 1) < 1e-5 for f in factors):
        return Verdict(FAIL, "you left out the scaling: multiply each row by its own adapter's scaling, "
                             "scaling[slots] (shape (batch,), viewed as (batch, 1, 1)).")
    if max(factors) - min(factors) < 1e-5:
        return Verdict(FAIL, "every row got one scaling; each row needs its own adapter's: "
                             "scaling[slots].view(-1, 1, 1).")
    return None


def _rows_verdict(fn: Callable) -> Verdict:
    x, A, B, scaling, slots = _stack()
    kept = _stack()  # the same inputs again, for the reference and to see whether the learner's changed
    got, problem = call_safely(fn, x, A, B, scaling, slots)
    if problem:
        if problem.status != FAIL:
            return problem
        if any(m in problem.message for m in ("shapes cannot be multiplied", "mat1 and mat2", "batch2 tensor")):
            return Verdict(FAIL, f"the shapes do not fit: {problem.message}. Gathered, A[slots] is (batch, r, in) "
                                 "and B[slots] (batch, out, r): x (batch, T, in) @ A[slots].transpose(1, 2) is "
                                 "(batch, T, r), then @ B[slots].transpose(1, 2) gives (batch, T, out).")
        return problem
    if not same(list(kept), [x, A, B, scaling, slots]):
        return Verdict(FAIL, "your function changed its inputs in place (+=, a method ending in _): the stack is "
                             "shared by every request. Build new tensors instead.")
    x, A, B, scaling, slots = kept
    if not isinstance(got, torch.Tensor):
        return Verdict(FAIL, f"lora_rows returned {describe(got)}{none_hint(got)}; return a tensor "
                             f"(batch, T, out) = {(BATCH, T, OUT)}.")
    want = _loop(x, A, B, scaling, slots)
    problem = device_dtype_problem(got, want, "lora_rows' answer")
    if problem:
        return problem
    if tuple(got.shape) != want.shape:
        return Verdict(FAIL, f"lora_rows should return (batch, T, out) = {tuple(want.shape)}, one row per request; "
                             f"yours is {tuple(got.shape)}.")
    if torch.allclose(got, want, atol=1e-5):
        return Verdict(PASS, "correct: each row's own A and B, gathered by its slot, with its own scaling — and "
                             "slot 0, all zeros, leaves the base's row alone.")
    first = _loop(x, A, B, scaling, slots[:1].repeat(len(slots)))
    if torch.allclose(got, first, atol=1e-5):
        return Verdict(FAIL, "every row used the first row's adapter: gather each row's own A and B with A[slots], "
                             "B[slots].")
    differ = Verdict(FAIL, "the values differ from computing each row alone, scaling[k] · x_i A_kᵀ B_kᵀ with "
                           "k = slots[i]; print both for one row and compare.")
    return _scaling_problem(got, x, A, B, scaling, slots) or differ


def check_lora_rows(fn: Callable) -> Callable:
    from ..serve import lora_rows

    return report("lora_rows", lambda: _rows_verdict(fn), fn, lora_rows, "lora_scratch.serve.lora_rows")
