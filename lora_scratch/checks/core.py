"""What every checker shares: the verdict, a safe call of the learner's code, the report."""
from __future__ import annotations

import functools
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
    """Print the verdict and return the function to go on with.

    The reference comes back wrapped and marked, so that running the check cell a second time without
    re-running the exercise cell (the name now holds the reference) says so instead of a false ✅."""
    if getattr(learner_fn, "_course_fallback", False):
        verdict = Verdict(TODO, "this name now holds the course's reference, not your code (the check fell back "
                                "to it last time). Run your exercise cell again, then this check.")
    print(f"{verdict.status} {exercise}: {verdict.message}")
    if verdict.status == PASS:
        print("   → the notebook goes on with your function.")
        return learner_fn
    print(f"   → the notebook goes on with the reference `{ref_name}`, so every cell below still runs.")
    return _marked(reference)


def _marked(reference: Callable) -> Callable:
    """The reference, callable as before (same name, signature and source), marked as a fallback."""
    @functools.wraps(reference)
    def fallback(*args, **kwargs):
        return reference(*args, **kwargs)

    fallback._course_fallback = True
    return fallback


def all_close(got: list[float], expected: list[float], rel_tol: float = 1e-6) -> bool:
    return all(math.isclose(g, e, rel_tol=rel_tol) for g, e in zip(got, expected))
