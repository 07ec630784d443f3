"""Checkers for 03_parameter_count: linear_params, lora_params, gpt_params, lora_budget.

Each one calls the learner's function on a few cases, and if the answers are wrong, tries the
typical mistakes (each written out below as a function) to name the one the learner made.
"""
from __future__ import annotations

import copy
import functools
from collections.abc import Callable

from ..gpt import GPTConfig
from .answers import as_whole, whole_problem
from .core import FAIL, PASS, Verdict, call_safely, report

Mistakes = list[tuple[Callable, str]]


def _verdict(fn: Callable, cases: list[tuple], reference: Callable, mistakes: Mistakes, shown: Callable,
             success: str) -> Verdict:
    """Run fn on every case; PASS if all match the reference, else name the first mistake that fits."""
    got = []
    for args in cases:
        value, problem = call_safely(fn, *copy.deepcopy(args))  # copies: these cases serve the whole session
        problem = problem or whole_problem(value, f"for {shown(args)} your function")
        if problem:
            return problem
        got.append(as_whole(value))
    expected = [reference(*args) for args in cases]
    if got == expected:
        return Verdict(PASS, success)
    for mistake, hint in mistakes:
        if got == [mistake(*args) for args in cases]:
            return Verdict(FAIL, hint)
    first = next(i for i, (g, e) in enumerate(zip(got, expected)) if g != e)
    return Verdict(FAIL, f"for {shown(cases[first])} the count is {expected[first]:,}; "
                         f"your function returned {got[first]:,}.")


# ---- linear_params(d_in, d_out, bias) ------------------------------------------------------------

LINEAR_CASES = [(768, 768, False), (768, 3072, True), (3072, 768, True), (10, 3, True), (10, 3, False)]
LINEAR_MISTAKES: Mistakes = [
    (lambda i, o, b: i * o, "you forgot the bias: with bias=True a Linear also stores b, one number per output "
                            "(d_out of them)."),
    (lambda i, o, b: i * o + (i if b else 0), "the bias has one number per output feature (d_out), not per "
                                              "input (d_in): y = W x + b has the shape of y."),
    (lambda i, o, b: i * o + o, "you counted a bias even when bias=False; add d_out only if bias is True."),
    (lambda i, o, b: i + o + (o if b else 0), "W is a d_out × d_in matrix: multiply d_in by d_out, don't add."),
]


def check_linear_params(fn: Callable) -> Callable:
    from ..counting import linear_params

    judge = functools.partial(_verdict, fn, LINEAR_CASES, linear_params, LINEAR_MISTAKES,
                              lambda a: f"linear_params({a[0]}, {a[1]}, bias={a[2]})",
                              "correct: d_in·d_out weights, plus d_out biases when bias=True.")
    return report("linear_params", judge, fn, linear_params, "lora_scratch.counting.linear_params",
                  probe=(768, 768, True))


# ---- lora_params(d_in, d_out, r) -----------------------------------------------------------------

LORA_CASES = [(768, 768, 4), (768, 3072, 8), (3072, 768, 8), (10, 3, 2)]
LORA_MISTAKES: Mistakes = [
    (lambda i, o, r: 2 * i * r, "2·d·r is right only for a square matrix (d_in = d_out). In general A is "
                                "(r, d_in) and B is (d_out, r): (d_in + d_out)·r."),
    (lambda i, o, r: 2 * o * r, "2·d·r is right only for a square matrix (d_in = d_out). In general A is "
                                "(r, d_in) and B is (d_out, r): (d_in + d_out)·r."),
    (lambda i, o, r: i * o * r, "A and B are two separate matrices: their sizes add, (d_in + d_out)·r; "
                                "d_in·d_out·r is bigger than the full matrix."),
    (lambda i, o, r: i * o, "d_in·d_out is the full matrix W, the thing LoRA avoids training; count A "
                            "(r, d_in) and B (d_out, r)."),
    (lambda i, o, r: i * r, "you counted only A (r, d_in); B (d_out, r) adds d_out·r more."),
    (lambda i, o, r: o * r, "you counted only B (d_out, r); A (r, d_in) adds d_in·r more."),
]


def check_lora_params(fn: Callable) -> Callable:
    from ..counting import lora_params

    judge = functools.partial(_verdict, fn, LORA_CASES, lora_params, LORA_MISTAKES,
                              lambda a: f"lora_params({a[0]}, {a[1]}, r={a[2]})",
                              "correct: A (r, d_in) plus B (d_out, r) = (d_in + d_out)·r.")
    return report("lora_params", judge, fn, lora_params, "lora_scratch.counting.lora_params", probe=(768, 768, 4))


# ---- gpt_params(cfg) -----------------------------------------------------------------------------

def _gpt_variant(cfg: GPTConfig, head: bool = False, pos: bool = True, ln: bool = True, ln_bias: bool = True,
                 ln_f: bool = True, lin_bias: bool = True, hidden: int = 4, n_attn: int = 4) -> int:
    """gpt_params with one piece changed: each keyword switches on one typical mistake."""
    C, L, V = cfg.n_embd, cfg.n_layer, cfg.vocab_size

    def lin(d_in: int, d_out: int) -> int:
        return d_in * d_out + (d_out if lin_bias else 0)

    norms = (2 * L + int(ln_f)) * C * (2 if ln_bias else 1) if ln else 0
    block = n_attn * lin(C, C) + lin(C, hidden * C) + lin(hidden * C, C)
    return V * C + (cfg.block_size * C if pos else 0) + L * block + norms + (V * C if head else 0)


GPT_CASES = [(GPTConfig.gpt2_small(),), (GPTConfig.tiny(),),
             (GPTConfig(vocab_size=1000, block_size=64, n_layer=3, n_head=4, n_embd=48),)]
GPT_MISTAKES: Mistakes = [
    (lambda c: _gpt_variant(c, head=True), "you counted lm_head as its own vocab × d matrix, but it is tied to "
                                           "the token embedding (the same tensor), so it adds 0: GPT-2 small "
                                           "has 124,439,808, not 163,037,184."),
    (lambda c: _gpt_variant(c, pos=False), "you forgot the position embedding: block_size × n_embd learned "
                                           "numbers (786,432 for GPT-2 small)."),
    (lambda c: _gpt_variant(c, ln_bias=False), "each LayerNorm stores a scale and a bias (shift): 2·d numbers, "
                                               "you counted d."),
    (lambda c: _gpt_variant(c, ln=False), "you forgot the LayerNorms: ln_1 and ln_2 in every block plus the "
                                          "final ln_f, 2·d numbers each."),
    (lambda c: _gpt_variant(c, ln_f=False), "you forgot the final LayerNorm ln_f (2·d numbers) after the last "
                                            "block."),
    (lambda c: _gpt_variant(c, lin_bias=False), "you forgot the biases of the six Linear layers in each block "
                                                "(d_out numbers each)."),
    (lambda c: _gpt_variant(c, hidden=1), "the MLP widens to 4·d and back: up_proj is d → 4d, down_proj 4d → d."),
    (lambda c: _gpt_variant(c, n_attn=3), "attention has four projections: q, k, v and the output o_proj."),
]


def check_gpt_params(fn: Callable) -> Callable:
    from ..counting import gpt_params

    judge = functools.partial(_verdict, fn, GPT_CASES, gpt_params, GPT_MISTAKES,
                              lambda a: f"GPTConfig(n_layer={a[0].n_layer}, n_embd={a[0].n_embd}, "
                                        f"vocab_size={a[0].vocab_size}, block_size={a[0].block_size})",
                              "correct: embeddings + n_layer blocks + ln_f, and the tied head adds nothing.")
    return report("gpt_params", judge, fn, gpt_params, "lora_scratch.counting.gpt_params",
                  probe=(GPTConfig.gpt2_small(),))


# ---- lora_budget(cfg, targets, r) ----------------------------------------------------------------

def _shapes(cfg: GPTConfig) -> dict[str, tuple[int, int]]:
    C = cfg.n_embd
    return {**dict.fromkeys(("q_proj", "k_proj", "v_proj", "o_proj"), (C, C)),
            "up_proj": (C, 4 * C), "down_proj": (4 * C, C)}


def _per_matrix(count: Callable, per_layer: bool = True) -> Callable:
    """A budget built from count(d_in, d_out, r) per target, times n_layer unless per_layer is False."""
    def budget(cfg: GPTConfig, targets, r: int) -> int:
        total = sum(count(*_shapes(cfg)[t], r) for t in targets)
        return total * (cfg.n_layer if per_layer else 1)
    return budget


BUDGET_CASES = [(GPTConfig.gpt2_small(), ["q_proj", "v_proj"], 4),
                (GPTConfig.gpt2_small(), ["up_proj", "down_proj"], 8),
                (GPTConfig.tiny(), ["q_proj", "k_proj", "v_proj", "o_proj"], 2),
                (GPTConfig.tiny(), ["up_proj"], 1)]
BUDGET_MISTAKES: Mistakes = [
    (_per_matrix(lambda i, o, r: (i + o) * r, per_layer=False), "you counted one block only: every one of "
                                                                "the n_layer blocks gets its own A and B."),
    (_per_matrix(lambda i, o, r: 2 * min(i, o) * r), "up_proj (d → 4d) and down_proj (4d → d) are not square: "
                                                     "use (d_in + d_out)·r, not 2·d·r."),
    (_per_matrix(lambda i, o, r: i * o * r), "per matrix LoRA adds (d_in + d_out)·r numbers, not d_in·d_out·r."),
    (_per_matrix(lambda i, o, r: i * o), "you counted the full matrices (what full fine-tuning would train), "
                                         "not their LoRA factors A and B."),
]


def check_lora_budget(fn: Callable) -> Callable:
    from ..counting import lora_budget

    judge = functools.partial(_verdict, fn, BUDGET_CASES, lora_budget, BUDGET_MISTAKES,
                              lambda a: f"n_layer={a[0].n_layer}, n_embd={a[0].n_embd}, targets={a[1]}, r={a[2]}",
                              "correct: n_layer × Σ over the targets of (d_in + d_out)·r.")
    return report("lora_budget", judge, fn, lora_budget, "lora_scratch.counting.lora_budget",
                  probe=(GPTConfig.gpt2_small(), ["q_proj", "v_proj"], 4))
