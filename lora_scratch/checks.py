"""Exercise checkers: ✅ correct, ❌ wrong (with a hint naming the likely mistake), ⏳ not done yet.

Each `check_<exercise>(fn)` calls the learner's function on known inputs, prints one verdict, and
returns the function the notebook should go on with: the learner's if it passed, otherwise the
package's reference (and says so), so an unfinished exercise never breaks the cells below it.
A checker never raises and prints nothing that changes from run to run.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

PASS, FAIL, TODO = "✅", "❌", "⏳"


@dataclass
class Verdict:
    status: str  # PASS, FAIL or TODO
    message: str


def _call(fn: Callable, *args):
    """Run the learner's code; turn any exception into a Verdict instead of a traceback."""
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, Verdict(TODO, "not done yet: replace the `raise NotImplementedError(...)` line with "
                                   "your code and run the cell again.")
    except Exception as e:  # noqa: BLE001 - a learner's bug must never stop the notebook
        return None, Verdict(FAIL, f"your function raised {type(e).__name__}: {e}")


def _is_number(x) -> bool:
    if hasattr(x, "item") and getattr(x, "numel", lambda: 1)() == 1:
        x = x.item()
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def report(exercise: str, verdict: Verdict, learner_fn: Callable, reference: Callable, ref_name: str):
    """Print the verdict and return the function to go on with."""
    print(f"{verdict.status} {exercise}: {verdict.message}")
    if verdict.status == PASS:
        print("   → the notebook goes on with your function.")
        return learner_fn
    print(f"   → the notebook goes on with the reference `{ref_name}`, so every cell below still runs.")
    return reference


# ---- 00_start_here ----

def _perplexity_verdict(fn: Callable) -> Verdict:
    losses = [0.0, 1.0, 1.5, math.log(256)]
    got = []
    for loss in losses:
        value, problem = _call(fn, loss)
        if problem:
            return problem
        if not _is_number(value):
            return Verdict(FAIL, f"perplexity({loss:g}) returned a {type(value).__name__}; return one number "
                                 "(a float), e.g. with math.exp(...).")
        got.append(float(value))
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
    from .train import perplexity

    return report("perplexity", _perplexity_verdict(fn), fn, perplexity, "lora_scratch.train.perplexity")


def _toy_model() -> nn.Module:
    """Frozen 10x10 Linear (110 numbers) + trainable 10x2 Linear (22 numbers)."""
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2))
    for p in model[0].parameters():
        p.requires_grad_(False)
    return model


def _count_trainable_verdict(fn: Callable) -> Verdict:
    value, problem = _call(fn, _toy_model())
    if problem:
        return problem
    if not _is_number(value) or float(value) != int(float(value)):
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
    from .counting import count_params

    def reference(model: nn.Module) -> int:
        return count_params(model, trainable_only=True)

    return report("count_trainable", _count_trainable_verdict(fn), fn, reference,
                  "lora_scratch.counting.count_params(model, trainable_only=True)")
