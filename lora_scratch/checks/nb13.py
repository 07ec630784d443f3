"""Checkers for 13_from_scratch_to_peft: c_attn_to_qkv.

GPT-2 keeps W_q, W_k, W_v in one Conv1D, c_attn, whose weight is (in, out) = (C, 3C): the transpose of nn.Linear's
(out, in), with q, k, v side by side as column blocks. The checker runs the learner's split on two sizes and, when
the values are wrong, tries the typical mistakes (written out below) to name the one made. Pure tensors: it needs
neither transformers nor PEFT.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .answers import device_dtype_problem, same
from .core import FAIL, PASS, Verdict, call_safely, describe, report

NAMES = ("q", "k", "v")


def _case(C: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(13 + C)
    return torch.randn(C, 3 * C, generator=g), torch.randn(3 * C, generator=g)


def _reference(weight, bias):
    C = weight.shape[0]
    return [(weight[:, i * C:(i + 1) * C].T, bias[i * C:(i + 1) * C]) for i in range(3)]


MISTAKES = [
    (lambda w, b: [(w[:, i * w.shape[0]:(i + 1) * w.shape[0]], b[i * w.shape[0]:(i + 1) * w.shape[0]])
                   for i in range(3)],
     "the weights are not transposed: a Conv1D stores (in, out), nn.Linear (out, in), so each block needs .T."),
    (lambda w, b: [(w.T[i * w.shape[0]:(i + 1) * w.shape[0]].T, b[i * w.shape[0]:(i + 1) * w.shape[0]])
                   for i in range(3)],
     "you took the right blocks but transposed twice (or not at all): W_q in nn.Linear's layout is "
     "weight[:, :C].T."),
]


def _pairs_problem(got, C: int) -> Verdict | None:
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        return Verdict(FAIL, f"return three pairs (W, b), for q, k and v, in that order; got {describe(got)}.")
    for name, pair in zip(NAMES, got):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(isinstance(t, torch.Tensor) for t in pair):
            return Verdict(FAIL, f"the {name} entry should be a pair of tensors (W, b); got {describe(pair)}.")
        W, b = pair
        if tuple(b.shape) == (3 * C,):
            return Verdict(FAIL, f"{name}'s bias is the whole ({3 * C},) bias: split it like the weight, one "
                                 f"({C},) block per projection.")
        if tuple(W.shape) != (C, C) or tuple(b.shape) != (C,):
            return Verdict(FAIL, f"{name}'s W should be ({C}, {C}) and b ({C},) for C = {C}; yours are "
                                 f"{tuple(W.shape)} and {tuple(b.shape)}. c_attn's weight is (C, 3C): q, k, v are "
                                 "its column blocks, weight[:, :C], weight[:, C:2C], weight[:, 2C:].")
    return None


def _verdict(fn: Callable) -> Verdict:
    for C in (4, 6):
        weight, bias = _case(C)
        kept = _case(C)
        got, problem = call_safely(fn, weight, bias)
        if problem:
            return problem
        if not same(list(kept), [weight, bias]):
            return Verdict(FAIL, "your function changed c_attn's weight or bias in place: GPT-2 still uses them. "
                                 "Build new tensors (slicing and .T do not copy, but they do not change the input).")
        problem = _pairs_problem(got, C)
        if problem:
            return problem
        want = _reference(*kept)
        for (W, b), (W_ref, b_ref) in zip(got, want):
            problem = device_dtype_problem(W, W_ref, "the weight") or device_dtype_problem(b, b_ref, "the bias")
            if problem:
                return problem
        if all(torch.equal(W, Wr) and torch.equal(b, br) for (W, b), (Wr, br) in zip(got, want)):
            continue
        order = [next((n for n, (Wr, _) in zip(NAMES, want) if torch.equal(W, Wr)), None) for W, _ in got]
        if all(order) and order != list(NAMES):
            return Verdict(FAIL, f"the blocks are in the order {', '.join(order)}; c_attn holds q, then k, then v.")
        hint = next((h for m, h in MISTAKES
                     if all(torch.equal(W, Wm) and torch.equal(b, bm) for (W, b), (Wm, bm) in zip(got, m(*kept)))),
                    None)
        return Verdict(FAIL, hint or f"for C = {C} the values differ from c_attn's column blocks, transposed "
                                     "(W_q = weight[:, :C].T, b_q = bias[:C], and so on for k and v).")
    return Verdict(PASS, "correct: c_attn's three column blocks, each transposed into nn.Linear's (out, in) layout, "
                         "and the bias cut the same way.")


def check_c_attn_to_qkv(fn: Callable) -> Callable:
    from ..interop import c_attn_to_qkv

    return report("c_attn_to_qkv", lambda: _verdict(fn), fn, c_attn_to_qkv, "lora_scratch.interop.c_attn_to_qkv")
