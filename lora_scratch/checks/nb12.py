"""Checkers for 12_serving_many_adapters: cached_attention.

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
