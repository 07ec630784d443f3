"""Checkers for 06_tiny_gpt: encode, causal_mask, causal_attention, temperature_softmax.

Each checker runs the learner's function on fixed inputs, checks type, shape and dtype before values,
and when the values are wrong tries the typical mistakes (written out below) to name the one made.
The references are the package's code: `data.encode`, and the two torch calls `gpt.py` makes,
`F.scaled_dot_product_attention(..., is_causal=True)` and `F.softmax(logits / temperature, dim=-1)`.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .answers import device_dtype_problem, device_problem, none_hint
from .core import FAIL, PASS, Verdict, call_safely, describe, report

Mistakes = list[tuple[Callable, str]]


def _tensor_problem(value, shape: tuple[int, ...] | None, what: str) -> Verdict | None:
    """A FAIL if value is not a CPU tensor (of the expected shape, when one is given), else None."""
    if not isinstance(value, torch.Tensor):
        return Verdict(FAIL, f"{what} returned {describe(value)}{none_hint(value)}; return a torch.Tensor.")
    problem = device_problem(value, "cpu", what)
    if problem:
        return problem
    if shape is not None and tuple(value.shape) != shape:
        return Verdict(FAIL, f"{what} should have shape {shape}, yours has {tuple(value.shape)}.")
    return None


def _first_mistake(got: torch.Tensor, args: tuple, mistakes: Mistakes, atol: float = 1e-5) -> str | None:
    for mistake, hint in mistakes:
        expected = mistake(*args)
        if expected.shape == got.shape and torch.allclose(got.double(), expected.double(), atol=atol, equal_nan=True):
            return hint
    return None


# ---- encode(text) -> (N,) int64 byte ids ---------------------------------------------------------

ENCODE_CASES = ["Vpon the Heath", "Cæsar, my Lord", "", "naïve café ✓"]


def _encode_problem(text: str, problem: Verdict) -> Verdict:
    """Name the likely cause when the learner's encode raised."""
    if "codec" in problem.message or "ordinal not in range" in problem.message:
        return Verdict(FAIL, f"encode({text!r}) failed: {problem.message}. Only UTF-8 can write every "
                             "character as bytes: use text.encode('utf-8').")
    if "'bytes'" in problem.message:
        return Verdict(FAIL, f"{problem.message}: torch.tensor cannot read a bytes object. Make it a list of ints "
                             "first: torch.tensor(list(text.encode('utf-8')), dtype=torch.long).")
    if text == "":
        return Verdict(FAIL, f"encode('') (the empty text) failed: {problem.message}. It must give an empty int64 "
                             "tensor, as torch.tensor(list(text.encode('utf-8')), dtype=torch.long) does.")
    return problem


def _encode_answer_problem(text: str, value, expected: torch.Tensor) -> Verdict | None:
    if isinstance(value, (list, tuple, bytes)):
        return Verdict(FAIL, f"encode({text!r}) returned a {type(value).__name__}; return a 1-D torch.Tensor "
                             "(torch.tensor(list(...), dtype=torch.long)).")
    problem = _tensor_problem(value, None, f"encode({text!r})")
    if problem:
        return problem
    if value.tolist() == [ord(c) for c in text] != expected.tolist():
        return Verdict(FAIL, "you wrote one id per character (ord() or latin-1): 'æ' became 230, but its UTF-8 "
                             "bytes are 195 and 166, and '✓' (10003) does not fit 256 ids at all. "
                             "Use text.encode('utf-8').")
    problem = _tensor_problem(value, tuple(expected.shape), f"encode({text!r})")
    if problem:
        return problem
    if value.dtype != torch.long:
        why = (" (torch.tensor([]) has no number to infer an integer type from, so it makes float32)"
               if text == "" and value.is_floating_point() else "")
        return Verdict(FAIL, f"encode({text!r}) returned dtype {value.dtype}{why}; nn.Embedding looks up int64 "
                             "ids, so pass dtype=torch.long.")
    if not torch.equal(value, expected):
        return Verdict(FAIL, f"encode({text!r}) should be {expected.tolist()}, yours is {value.tolist()}.")
    return None


def _encode_verdict(fn: Callable) -> Verdict:
    from ..data import encode

    for text in ENCODE_CASES:
        value, problem = call_safely(fn, text)
        if problem:
            return _encode_problem(text, problem)
        problem = _encode_answer_problem(text, value, encode(text))
        if problem:
            return problem
    return Verdict(PASS, "correct: UTF-8 bytes, so any text fits 256 ids and 'æ' becomes two of them.")


def check_encode(fn: Callable) -> Callable:
    from ..data import encode

    return report("encode", lambda: _encode_verdict(fn), fn, encode, "lora_scratch.data.encode")


# ---- causal_mask(T) -> (T, T) bool, True where query t may attend key s -------------------------

def causal_mask_reference(T: int) -> torch.Tensor:
    """The boolean mask F.scaled_dot_product_attention(is_causal=True) builds: key s ≤ query t."""
    return torch.ones(T, T, dtype=torch.bool).tril()


MASK_MISTAKES: Mistakes = [
    (lambda T: torch.ones(T, T, dtype=torch.bool).triu(),
     "you kept the upper triangle: row t (the query) would see keys t, t+1, …, the future. Keep the lower "
     "triangle, torch.tril."),
    (lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1),
     "you left out the diagonal: a token must see itself (row 0 would see nothing at all, and its softmax "
     "over only −∞ gives NaN). Use tril with diagonal=0."),
    (lambda T: torch.ones(T, T, dtype=torch.bool).tril(1),
     "off by one: each query also sees the next key (tril(1), or s ≤ t + 1). Use tril with diagonal=0: s ≤ t."),
    (lambda T: torch.ones(T, T, dtype=torch.bool).triu(1),
     "you marked the positions to block (True above the diagonal). Here True means 'may attend', as in "
     "F.scaled_dot_product_attention's boolean attn_mask: return the lower triangle, diagonal included."),
]


def _causal_mask_verdict(fn: Callable) -> Verdict:
    for T in (4, 7, 1):  # T = 1 last: there several mistakes look alike
        value, problem = call_safely(fn, T)
        if problem:
            return problem
        shape_problem = _tensor_problem(value, (T, T), f"causal_mask({T})")
        if shape_problem:
            return shape_problem
        if value.dtype != torch.bool:
            return Verdict(FAIL, f"causal_mask returned dtype {value.dtype}; return a bool tensor (True = may "
                                 "attend), e.g. torch.ones(T, T, dtype=torch.bool).tril().")
        if not torch.equal(value, causal_mask_reference(T)):
            for mistake, hint in MASK_MISTAKES:
                if torch.equal(value, mistake(T)):
                    return Verdict(FAIL, hint)
            return Verdict(FAIL, f"causal_mask({T}) should be True at (t, s) exactly when s ≤ t; "
                                 f"yours is\n{value.int()}")
    return Verdict(PASS, "correct: the lower triangle with its diagonal; query t sees keys 0…t.")


def check_causal_mask(fn: Callable) -> Callable:
    return report("causal_mask", lambda: _causal_mask_verdict(fn), fn, causal_mask_reference,
                  "lora_scratch.checks.nb06.causal_mask_reference")


# ---- causal_attention(q, k, v) -> softmax(q kᵀ / √hs + causal mask) v ---------------------------

def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """What gpt.py's CausalSelfAttention calls (Vaswani et al., 2017, §3.2.1, with the causal mask)."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


NOTEBOOK_HS = 32  # the notebook's global hs (C = 160 / 5 heads); the checker's q has hs = 16


def _attention_variant(q, k, v, scale: str = "sqrt", dim: int = -1, mask: str = "lower", after: bool = False,
                       fill: float = float("-inf")):
    """Masked scaled dot-product attention with one piece changed: each keyword is a typical mistake."""
    hs, T = q.size(-1), q.size(-2)
    divisor = {"sqrt": math.sqrt(hs), "none": 1.0, "d": hs, "notebook_hs": math.sqrt(NOTEBOOK_HS)}[scale]
    scores = q @ k.transpose(-2, -1) / divisor
    ones = torch.ones(T, T, dtype=torch.bool)
    allowed = {"lower": ones.tril(), "none": ones, "upper": ones.triu(), "inverted": ones.triu(1)}[mask]
    if after:  # zeroing the future after the softmax leaves rows that no longer sum to 1
        return (F.softmax(scores, dim=dim) * allowed) @ v
    return F.softmax(scores.masked_fill(~allowed, fill), dim=dim) @ v


ATTENTION_MISTAKES: Mistakes = [
    (lambda q, k, v: _attention_variant(q, k, v, scale="none"),
     "you forgot the scaling: divide q @ kᵀ by √hs (hs = q.size(-1)). Without it the scores grow with hs and "
     "the softmax saturates (Vaswani et al., §3.2.1)."),
    (lambda q, k, v: _attention_variant(q, k, v, scale="d"),
     "you divided by hs; the scaling is 1/√hs (math.sqrt(q.size(-1)))."),
    (lambda q, k, v: _attention_variant(q, k, v, dim=-2),
     "your softmax runs over the queries (dim=-2). Each query's weights over the keys must sum to 1: "
     "softmax over the last dim."),
    (lambda q, k, v: _attention_variant(q, k, v, mask="none"),
     "you left out the causal mask: every token sees the future. Fill the scores where causal_mask is False "
     "with -inf before the softmax."),
    (lambda q, k, v: _attention_variant(q, k, v, mask="upper"),
     "your mask keeps the upper triangle: tokens attend to the future, not the past. Keep s ≤ t (tril)."),
    (lambda q, k, v: _attention_variant(q, k, v, mask="inverted"),
     "you filled the allowed positions with -inf (masked_fill(mask, …)): fill where the mask is False, "
     "scores.masked_fill(~mask, float('-inf')). Your last row is all -inf, hence NaN."),
    (lambda q, k, v: _attention_variant(q, k, v, fill=0.0),
     "you filled the future scores with 0 (masked_fill(~mask, 0), or scores * mask). exp(0) = 1, so the "
     "future still gets weight: fill with float('-inf'), whose exp is 0."),
    (lambda q, k, v: _attention_variant(q, k, v, scale="notebook_hs"),
     f"you divided by √{NOTEBOOK_HS}, the notebook's global hs; the checker's q has hs = 16. Take the sizes from "
     "the inputs: hs = q.size(-1), T = q.size(-2)."),
    (lambda q, k, v: _attention_variant(q, k, v, after=True),
     "you masked after the softmax, so the rows no longer sum to 1. Put -inf into the scores before the "
     "softmax (scores.masked_fill(~mask, float('-inf')))."),
]


def _attention_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(6)
    B, nh, T, hs = 2, 3, 5, 16  # T ≠ hs, so a missing transpose fails loudly; hs = 16 makes √hs = 4 matter
    return tuple(torch.randn(B, nh, T, hs, generator=g) for _ in range(3))


_SIZES_HINT = ("Here q, k, v are (2, 3, 5, 16) = (B, nh, T, hs): take T and hs from q (q.size(-2), q.size(-1)), "
               "not from the notebook's variables, and transpose only k's last two dims, k.transpose(-2, -1) "
               "(k.T would reverse all four).")


def _attention_verdict(fn: Callable) -> Verdict:
    q, k, v = _attention_inputs()
    args = (q.clone(), k.clone(), v.clone())  # so we can see in-place edits
    value, problem = call_safely(fn, *args)
    if problem:
        sizes = "size" in problem.message or "shape" in problem.message
        return Verdict(FAIL, f"{problem.message}. {_SIZES_HINT}") if sizes else problem
    changed = [name for name, a, b in zip("qkv", args, (q, k, v)) if not torch.equal(a, b)]
    if changed:
        return Verdict(FAIL, f"your function changed {changed[0]} in place ({changed[0]} /= … or an _ method); the "
                             "notebook uses q, k, v again after calling it. Write scores = q @ k.transpose(-2, -1) "
                             "/ math.sqrt(hs), a new tensor.")
    if isinstance(value, torch.Tensor) and tuple(value.shape) == (2, 3, 5, 5):
        return Verdict(FAIL, "you returned the attention weights (B, nh, T, T); multiply them by v to get "
                             "(B, nh, T, hs).")
    shape_problem = _tensor_problem(value, tuple(q.shape), "causal_attention(q, k, v) with q, k, v (2, 3, 5, 16)")
    if shape_problem:
        return shape_problem
    if value.dtype != q.dtype:
        return device_dtype_problem(value, q, "causal_attention's output")
    if torch.allclose(value, attention_reference(q, k, v), atol=1e-5):
        return Verdict(PASS, "correct: softmax(q kᵀ / √hs, masked) v, equal to "
                             "F.scaled_dot_product_attention(q, k, v, is_causal=True).")
    hint = _first_mistake(value, (q, k, v), ATTENTION_MISTAKES)
    if not hint and torch.isnan(value).any():
        hint = ("your output has NaN: a row of the scores is all -inf. Does the mask keep the diagonal (each "
                "token sees itself)?")
    return Verdict(FAIL, hint or "your output differs from softmax(q kᵀ / √hs with the causal mask) v; print "
                                 "the weights of one head: the upper triangle must be 0 and each row sum to 1.")


def check_causal_attention(fn: Callable) -> Callable:
    return report("causal_attention", lambda: _attention_verdict(fn), fn, attention_reference,
                  "lora_scratch.checks.nb06.attention_reference")


# ---- temperature_softmax(logits, temperature) -> probabilities over the vocabulary --------------

def temperature_reference(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The two lines of GPT.generate that turn the last position's logits into probabilities."""
    return F.softmax(logits / temperature, dim=-1)


TEMPERATURE_MISTAKES: Mistakes = [
    (lambda x, t: F.softmax(x * t, dim=-1),
     "you multiplied the logits by the temperature; divide by it, so that T < 1 sharpens the distribution "
     "and T > 1 flattens it."),
    (lambda x, t: F.softmax(x, dim=-1),
     "the temperature has no effect in your function: divide the logits by it before the softmax."),
    (lambda x, t: F.softmax(x / t, dim=0),
     "your softmax runs over the batch (dim=0); each row is one distribution over the 256 bytes: dim=-1."),
    (lambda x, t: F.softmax(x, dim=-1) / t,
     "you divided the probabilities by T, so the rows no longer sum to 1; divide the logits, then softmax."),
    (lambda x, t: F.log_softmax(x / t, dim=-1),
     "you returned log-probabilities (log_softmax); return the probabilities, F.softmax(logits / T, dim=-1)."),
]


def _temperature_verdict(fn: Callable) -> Verdict:
    logits = 3 * torch.randn(3, 256, generator=torch.Generator().manual_seed(6))
    for t in (0.5, 1.0, 2.0):
        given = logits.clone()
        value, problem = call_safely(fn, given, t)
        if problem:
            return problem
        if not torch.equal(given, logits):
            return Verdict(FAIL, "your function changed the logits in place (logits /= temperature): the notebook "
                                 "calls it on the same logits at three temperatures, and each call would divide "
                                 "them again. Write logits / temperature, a new tensor.")
        shape_problem = _tensor_problem(value, (3, 256), f"temperature_softmax(logits (3, 256), {t})")
        if shape_problem:
            return shape_problem
        if value.dtype != logits.dtype:
            return device_dtype_problem(value, logits, "temperature_softmax's output")
        if torch.allclose(value, temperature_reference(logits, t), atol=1e-6):
            continue
        hint = _first_mistake(value, (logits, t), TEMPERATURE_MISTAKES, atol=1e-6)
        if hint:
            return Verdict(FAIL, hint)
        if not torch.allclose(value.sum(-1), torch.ones(3), atol=1e-4):
            return Verdict(FAIL, "your rows do not sum to 1: return probabilities, F.softmax(logits / "
                                 "temperature, dim=-1), not scaled logits or unnormalised exponentials.")
        return Verdict(FAIL, f"at temperature {t} your probabilities differ from softmax(logits / T).")
    return Verdict(PASS, "correct: softmax(logits / T); T < 1 sharpens, T > 1 flattens, T = 1 leaves it as is.")


def check_temperature_softmax(fn: Callable) -> Callable:
    return report("temperature_softmax", lambda: _temperature_verdict(fn), fn, temperature_reference,
                  "lora_scratch.checks.nb06.temperature_reference")
