"""Checkers for 07_finetune_with_lora: choose_targets, optimizer_state_bytes, forgetting, folio_gain."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch.nn as nn

from .core import FAIL, PASS, Verdict, call_safely, is_number, numbers_from, report

_PARTS = {"attention": ["q_proj", "k_proj", "v_proj", "o_proj"], "mlp": ["up_proj", "down_proj"]}
_PARTS["all"] = _PARTS["attention"] + _PARTS["mlp"]


def _targets_verdict(fn: Callable) -> Verdict:
    for part, want in _PARTS.items():
        got, problem = call_safely(fn, part)
        if problem:
            return problem
        if isinstance(got, str) or not all(isinstance(t, str) for t in (got or [])):
            return Verdict(FAIL, f"choose_targets({part!r}) should return a list of module names (str), "
                                 f"e.g. ['up_proj', 'down_proj'], got {got!r}.")
        got = list(got)
        if any(t in ("lm_head", "tok_emb") for t in got):
            return Verdict(FAIL, "you included lm_head/tok_emb: the head is tied to the token embedding, so "
                                 "LoRA there would silently change the embedding too; adapt projections only.")
        if part == "attention" and sorted(got) == sorted(_PARTS["mlp"]):
            return Verdict(FAIL, "attention and mlp are swapped: q, k, v, o live in attention; up and down "
                                 "in the MLP.")
        if sorted(got) != sorted(want):
            missing = sorted(set(want) - set(got))
            extra = sorted(set(got) - set(want))
            return Verdict(FAIL, f"choose_targets({part!r}) misses {missing} and has extra {extra}. "
                                 "Attention has q_proj, k_proj, v_proj and o_proj (the output projection is "
                                 "easy to forget); the MLP has up_proj and down_proj.")
    return Verdict(PASS, "correct: 'all' adapts the six projections of every block, never the tied head.")


def check_choose_targets(fn: Callable) -> Callable:
    from ..finetune import choose_targets

    return report("choose_targets", _targets_verdict(fn), fn, choose_targets,
                  "lora_scratch.finetune.choose_targets")


def _toy_model() -> nn.Module:
    """Frozen 10x10 Linear (110 fp32 numbers) + trainable 10x2 Linear (22): Adam keeps 2 x 22 x 4 = 176 B."""
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2))
    for p in model[0].parameters():
        p.requires_grad_(False)
    return model


def _optimizer_bytes_verdict(fn: Callable) -> Verdict:
    value, problem = call_safely(fn, _toy_model())
    if problem:
        return problem
    if not is_number(value):
        return Verdict(FAIL, f"return a number of bytes (an int), got {type(value).__name__}.")
    value = float(value)
    hints = {
        176: None,
        1056: "you counted the frozen parameters too (132 numbers): Adam keeps state only for parameters "
              "with requires_grad=True — that is LoRA's whole saving here.",
        88: "you counted one state tensor per parameter; Adam keeps two, the mean m and the square mean v.",
        44: "you counted numbers, not bytes: multiply by p.element_size() (4 for fp32).",
        528: "you counted frozen parameters and only one state tensor.",
        264: "three states per parameter? Adam keeps two (m and v); the weight itself is not optimizer state.",
    }
    for expected, hint in hints.items():
        if math.isclose(value, expected):
            if hint is None:
                return Verdict(PASS, "correct: 2 states × 4 bytes × trainable parameters only.")
            return Verdict(FAIL, hint)
    return Verdict(FAIL, f"a frozen 10x10 Linear plus a trainable 10x2 Linear (22 numbers, fp32) needs "
                         f"2 × 22 × 4 = 176 bytes of Adam state; your function returned {value:g}.")


def check_optimizer_state_bytes(fn: Callable) -> Callable:
    from ..finetune import optimizer_state_bytes

    return report("optimizer_state_bytes", _optimizer_bytes_verdict(fn), fn, optimizer_state_bytes,
                  "lora_scratch.finetune.optimizer_state_bytes")


_PAIRS = [(1.5, 1.6), (1.9, 1.5), (1.0, 1.0), (2.0, 1.2)]  # (before, after)


def _signed_verdict(fn: Callable, name: str, want: Callable, meaning: str) -> Verdict:
    got, problem = numbers_from(fn, _PAIRS, name, "a float")
    if problem:
        return problem
    close = lambda f: all(math.isclose(g, f(b, a), abs_tol=1e-9) for g, (b, a) in zip(got, _PAIRS))  # noqa: E731
    if close(want):
        return Verdict(PASS, f"correct: {meaning}")
    if close(lambda b, a: -want(b, a)):
        return Verdict(FAIL, f"the sign is flipped. {meaning[0].upper() + meaning[1:]}")
    if close(lambda b, a: abs(a - b)):
        return Verdict(FAIL, "you took the absolute value, which hides the direction: keep the sign, so that "
                             f"the opposite change comes out negative. {meaning}")
    if close(lambda b, a: a / b) or close(lambda b, a: b / a):
        return Verdict(FAIL, f"you returned a ratio; use the difference of the losses (nats). {meaning}")
    return Verdict(FAIL, f"{name}(before=1.5, after=1.6) should be {want(1.5, 1.6):+.1f}; "
                         f"yours returned {got[0]:g}. {meaning}")


def check_forgetting(fn: Callable) -> Callable:
    from ..finetune import forgetting

    verdict = _signed_verdict(fn, "forgetting", lambda b, a: a - b,
                              "forgetting = modern loss after − before, positive when the model got worse.")
    return report("forgetting", verdict, fn, forgetting, "lora_scratch.finetune.forgetting")


def check_folio_gain(fn: Callable) -> Callable:
    from ..finetune import folio_gain

    verdict = _signed_verdict(fn, "folio_gain", lambda b, a: b - a,
                              "gain = Folio loss before − after, positive when the model learned.")
    return report("folio_gain", verdict, fn, folio_gain, "lora_scratch.finetune.folio_gain")
