"""What every checker shares: the verdict, a safe call of the learner's code, the report."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

PASS, FAIL, TODO = "✅", "❌", "⏳"


@dataclass
class Verdict:
    status: str  # PASS, FAIL or TODO
    message: str


def call_safely(fn: Callable, *args):
    """Run the learner's code; turn any exception into a Verdict instead of a traceback."""
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, Verdict(TODO, "not done yet: replace the `raise NotImplementedError(...)` line with "
                                   "your code and run the cell again.")
    except Exception as e:  # noqa: BLE001 - a learner's bug must never stop the notebook
        return None, Verdict(FAIL, f"your function raised {type(e).__name__}: {e}")


def is_number(x) -> bool:
    if hasattr(x, "item") and getattr(x, "numel", lambda: 1)() == 1:
        x = x.item()
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def numbers_from(fn: Callable, cases: list[tuple], name: str, expected: str = "a float"):
    """Call fn(*case) for each case; return (values, None), or (None, Verdict) at the first exception
    or non-number, so a checker's verdict logic only ever sees a list of floats."""
    values = []
    for case in cases:
        value, problem = call_safely(fn, *case)
        if problem:
            return None, problem
        if not is_number(value):
            args = ", ".join(f"{a:g}" if isinstance(a, float) else str(a) for a in case)
            return None, Verdict(FAIL, f"{name}({args}) returned a {type(value).__name__}; return one number "
                                       f"({expected}).")
        values.append(float(value))
    return values, None


def report(exercise: str, verdict: Verdict, learner_fn: Callable, reference: Callable, ref_name: str):
    """Print the verdict and return the function to go on with."""
    print(f"{verdict.status} {exercise}: {verdict.message}")
    if verdict.status == PASS:
        print("   → the notebook goes on with your function.")
        return learner_fn
    print(f"   → the notebook goes on with the reference `{ref_name}`, so every cell below still runs.")
    return reference


def all_close(got: list[float], expected: list[float], rel_tol: float = 1e-6) -> bool:
    return all(math.isclose(g, e, rel_tol=rel_tol) for g, e in zip(got, expected))
