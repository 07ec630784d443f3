"""Checkers for 00_start_here: perplexity, count_trainable."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch.nn as nn

from .answers import as_whole, first_wrong, numbers_from, shown, whole_problem
from .core import FAIL, PASS, Verdict, call_safely, report


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
    i = first_wrong(got, [math.exp(x) for x in losses])
    g, w = shown(got[i], math.exp(losses[i]))
    return Verdict(FAIL, f"perplexity({losses[i]:g}) should be e ** {losses[i]:g} = {w}, your function returned {g}.")


def check_perplexity(fn: Callable) -> Callable:
    from ..train import perplexity

    return report("perplexity", lambda: _perplexity_verdict(fn), fn, perplexity, "lora_scratch.train.perplexity",
                  probe=(1.0,))


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
    problem = whole_problem(value, "count_trainable(model)")
    if problem:
        return problem
    value = as_whole(value)
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

    return report("count_trainable", lambda: _count_trainable_verdict(fn), fn, reference,
                  "lora_scratch.counting.count_params", probe=lambda: (_toy_model(),))
