"""Checkers for 00_start_here: perplexity, count_trainable."""
from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch.nn as nn

from .core import FAIL, PASS, Verdict, call_safely, is_number, numbers_from, report


def plain_numbers(verdict: Verdict, fn: Callable, *probe) -> tuple[Verdict, Callable]:
    """After a pass, a learner's function that returns a 0-dim tensor (or a NumPy scalar) is wrapped to return
    a Python number: the notebooks round() and format its results, which a tensor does not support.
    Used by the checkers of nb00-nb04; `probe` is one set of arguments to look at the result's type."""
    value, problem = call_safely(fn, *probe)
    if verdict.status != PASS or problem or not (hasattr(value, "item") and getattr(value, "ndim", 1) == 0):
        return verdict, fn

    @functools.wraps(fn)
    def as_number(*args):
        result = fn(*args)
        return result.item() if hasattr(result, "item") and getattr(result, "ndim", 1) == 0 else result

    note = f" (It returns a {type(value).__name__}; from here on its result is turned into a Python number.)"
    return Verdict(PASS, verdict.message + note), as_number


def _perplexity_verdict(fn: Callable) -> Verdict:
    losses = [0.0, 1.0, 1.5, math.log(256)]
    got, problem = numbers_from(fn, [(x,) for x in losses], "perplexity", "a float, e.g. with math.exp(...)")
    if problem:
        return problem
    close = lambda f: all(math.isclose(g, f(x), rel_tol=1e-6) for g, x in zip(got, losses))  # noqa: E731
    if close(math.exp):
        return Verdict(PASS, "correct: perplexity = e ** loss when the loss is in nats.")
    if close(lambda x: 2 ** x):
        return Verdict(FAIL, "you computed 2 ** loss. The loss here is in nats (natural log), so the "
                             "perplexity is e ** loss (math.exp); 2 ** x fits a loss measured in bits.")
    if close(lambda x: 10 ** x):
        return Verdict(FAIL, "you computed 10 ** loss; the loss uses the natural log, so use math.exp(loss).")
    if close(lambda x: x):
        return Verdict(FAIL, "you returned the loss itself; perplexity undoes the log: e ** loss.")
    if close(lambda x: math.exp(-x)):
        return Verdict(FAIL, "you computed e ** (-loss), which is the average probability, not the "
                             "perplexity; drop the minus sign.")
    return Verdict(FAIL, f"perplexity(1.0) should be e ≈ 2.718, your function returned {got[1]:.4g}.")


def check_perplexity(fn: Callable) -> Callable:
    from ..train import perplexity

    return report("perplexity", *plain_numbers(_perplexity_verdict(fn), fn, 1.0), perplexity,
                  "lora_scratch.train.perplexity")


def _toy_model() -> nn.Module:
    """Frozen 10x10 Linear (110 numbers) + trainable 10x2 Linear (22 numbers)."""
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2))
    for p in model[0].parameters():
        p.requires_grad_(False)
    return model


def _count_trainable_verdict(fn: Callable) -> Verdict:
    value, problem = call_safely(fn, _toy_model())
    if problem:
        return problem
    if not is_number(value) or float(value) != int(float(value)):
        return Verdict(FAIL, f"return a whole number (an int), got {value!r} of type {type(value).__name__}.")
    value = int(float(value))
    if value == 22:
        return Verdict(PASS, "correct: only parameters with requires_grad=True are counted.")
    if value == 132:
        return Verdict(FAIL, "you counted all 132 numbers, frozen ones too; keep only parameters "
                             "with p.requires_grad.")
    if value in (2, 4):
        return Verdict(FAIL, f"you counted {value} tensors, not the numbers inside them: use p.numel().")
    if value == 110:
        return Verdict(FAIL, "you counted the frozen parameters (requires_grad=False) instead of the "
                             "trainable ones.")
    return Verdict(FAIL, f"a frozen 10x10 Linear plus a trainable 10x2 Linear has 22 trainable numbers; "
                         f"your function returned {value}.")


def check_count_trainable(fn: Callable) -> Callable:
    from ..counting import count_params

    def reference(model: nn.Module) -> int:
        return count_params(model, trainable_only=True)

    return report("count_trainable", *plain_numbers(_count_trainable_verdict(fn), fn, _toy_model()), reference,
                  "lora_scratch.counting.count_params(model, trainable_only=True)")
