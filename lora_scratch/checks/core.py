"""What every checker shares: the verdict, a safe call of the learner's code, and `report`, which runs a whole
check inside a safety net and prints its one verdict.

The safety net (`report` runs each check's judge through `_judged`):
- an exception from the learner's code is a ❌ "your function raised …" (call_safely); one from the checker's own
  comparison, on an answer nobody foresaw, is a ❌ that describes the answer — never a traceback;
- SystemExit (a learner's exit() or sys.exit()) is a ❌ too. KeyboardInterrupt is not caught: the stop button
  must still stop a cell, and that traceback is the one the learner asked for;
- the whole check, every call of the learner's function included, gets TIME_LIMIT_S seconds (time_limit.py: SIGALRM
  on POSIX in the main thread, where Jupyter runs cells; elsewhere a worker thread that is abandoned after the
  limit, and the ❌ says the runaway call goes on in the background);
- the learner's session is left as it was: torch's global RNG (CPU, and CUDA once initialised) and the default
  dtype are restored, and the check runs with gradients on whatever `no_grad()` or `inference_mode()` the
  learner's cell used.
"""
from __future__ import annotations

import dis
import functools
import json
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .time_limit import OutOfTime, within

PASS, FAIL, TODO = "✅", "❌", "⏳"
TIME_LIMIT_S = 10.0  # for a whole check; every reference takes well under a second (tests lower it)
_TORCH_DIR = str(Path(torch.__file__).parent)


@dataclass
class Verdict:
    status: str  # PASS, FAIL or TODO
    message: str


_last_answer: list = []  # what the learner's function last returned, for the safety net's message


def call_safely(fn: Callable, *args, **kwargs) -> tuple[Any, Verdict | None]:
    """Run the learner's code; turn anything it raises into a Verdict instead of a traceback."""
    try:
        value = fn(*args, **kwargs)
    except (KeyboardInterrupt, OutOfTime):
        raise  # the stop button, and the time limit, end the whole check
    except NotImplementedError as e:
        if not _is_unfinished(e):
            return None, Verdict(FAIL, f"your function raised NotImplementedError inside torch: {_text(e)}")
        return None, Verdict(TODO, "not done yet: replace the `raise NotImplementedError(...)` line with "
                                   "your code and run the cell again.")
    except SystemExit:
        return None, Verdict(FAIL, "your function called exit() (or sys.exit, quit), which ends the program instead "
                                   "of answering: `return` the result.")
    except BaseException as e:  # noqa: BLE001 - a learner's bug must never stop the notebook
        return None, Verdict(FAIL, f"your function raised {type(e).__name__}: {_text(e)}")
    _last_answer[:] = [value]
    return value, None


def _is_unfinished(error: NotImplementedError) -> bool:
    """True for the stub's own `raise NotImplementedError(...)`; False when torch raised it inside the learner's
    code (e.g. reading a tensor on the meta device): that is a bug to report, not an unfinished exercise."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return True
    code = tb.tb_frame.f_code
    if code.co_filename.startswith(_TORCH_DIR):
        return False
    ops = [op.opname for op in dis.get_instructions(code) if op.offset == tb.tb_lasti]
    return not ops or ops[0] == "RAISE_VARARGS"  # a `raise` statement, not a call that failed inside C++


def _text(error: BaseException) -> str:
    """str(error), even for a learner's exception class whose __str__ itself fails."""
    try:
        return str(error)
    except Exception:  # noqa: BLE001 - the message of a broken exception: its type must do
        return f"(an {type(error).__name__} that cannot be printed)"


def describe(value) -> str:
    """A short, deterministic description of any answer, for messages."""
    try:
        return _described(value)
    except Exception:  # noqa: BLE001 - an object that cannot even say its shape: its type must do
        return f"a {type(value).__name__}"


def _described(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return f"the bool {value}"
    if isinstance(value, int):
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"the int {value}" if digits <= 20 else f"an int of about {digits} digits"
    if isinstance(value, float):
        return f"the float {value!r}"
    if isinstance(value, str):
        return f"a str ({value!r})" if len(value) <= 40 else f"a str of {len(value)} characters"
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)} on {value.device}"
    if type(value).__module__ == "numpy":
        return f"a NumPy {type(value).__name__} of shape {getattr(value, 'shape', ())}"
    if isinstance(value, (list, tuple, dict, set)):
        return f"a {type(value).__name__} of {len(value)} item{'s' if len(value) != 1 else ''}"
    return f"a {type(value).__name__}"


def report(exercise: str, judge: Callable[[], Verdict], learner_fn: Callable, reference: Callable, ref_name: str,
           probe: tuple | Callable[[], tuple] | None = None) -> Callable:
    """Judge the learner's function, print the one verdict, and return the function to go on with.

    `judge()` runs the check and returns its Verdict; `probe` (one set of arguments, or a function that builds
    them inside the sandbox) is given by checkers whose answer is one number, so that a passing function
    returning a 0-dim tensor is wrapped to return a Python number.
    The reference comes back wrapped and marked, so that running the check cell a second time without
    re-running the exercise cell (the name now holds the reference) says so instead of a false ✅."""
    if getattr(learner_fn, "_course_fallback", False):
        verdict, go_on = Verdict(TODO, "this name now holds the course's reference, not your code (the check fell "
                                       "back to it last time). Run your exercise cell again, then this check."), None
    else:
        verdict, go_on = _judged(judge, learner_fn, probe)
    print(f"{verdict.status} {exercise}: {verdict.message}")
    if verdict.status == PASS:
        print("   → the notebook goes on with your function.")
        _record(exercise, verdict)
        return go_on
    print(f"   → the notebook goes on with the reference `{ref_name}`, so every cell below still runs.")
    fallback = _marked(reference)
    if _strict():
        # The raise below stops the check cell before `name = checks.check_name(name)` rebinds the name, so bind
        # the reference here, in the learner's namespace: later cells still run on a correct function.
        namespace = getattr(learner_fn, "__globals__", None)
        if isinstance(namespace, dict) and namespace.get("__name__") == "__main__":
            namespace[exercise] = fallback
    _record(exercise, verdict)
    return fallback


# ---------------------------------------------------------------- verdicts as data (grading)

STATUS_NAMES = {PASS: "pass", FAIL: "fail", TODO: "todo"}
VERDICTS_ENV = "LORA_SCRATCH_VERDICTS"  # a file: every verdict is appended to it as one JSON line
STRICT_ENV = "LORA_SCRATCH_CHECKS"  # "strict": a ❌ or ⏳ also raises (for autograders that score by errors)
_verdicts: list[dict] = []


class CheckFailed(AssertionError):
    """Raised after the printed verdict in strict mode only (nbgrader and otter score a cell by whether it raises)."""


def verdicts() -> list[dict]:
    """Every verdict of this session so far, in order: {"exercise", "status" (pass, fail or todo), "message"}."""
    return [dict(v) for v in _verdicts]


def _record(exercise: str, verdict: Verdict) -> None:
    row = {"exercise": exercise, "status": STATUS_NAMES.get(verdict.status, "fail"), "message": verdict.message}
    _verdicts.append(row)
    path = os.environ.get(VERDICTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:  # one line per verdict, flushed: a crash later keeps it
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    if _strict() and row["status"] != "pass":
        raise CheckFailed(f"{exercise}: {row['status']}: {verdict.message}")


def passes(checker: Callable, fn: Callable) -> bool:
    """True when `checker` accepts `fn`, printing nothing and never raising: a test case for graders that compare
    output (otter's doctests: `>>> checks.passes(checks.check_lora_params, lora_params)` expecting `True`)."""
    import contextlib
    import io

    before = len(_verdicts)
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            checker(fn)
        except CheckFailed:
            pass
    return len(_verdicts) > before and _verdicts[-1]["status"] == "pass"


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "").lower() == "strict"


def _judged(judge: Callable[[], Verdict], learner_fn: Callable, probe) -> tuple[Verdict, Callable]:
    """Run the judge (and the number probe) in the sandbox, within the time limit; never raise (bar Ctrl-C)."""
    def work() -> tuple[Verdict, Callable]:
        with _sandbox():
            verdict = judge()
            if not isinstance(verdict, Verdict):
                raise TypeError(f"the judge returned {describe(verdict)}, not a Verdict")
            if probe is None:
                return verdict, learner_fn
            return plain_numbers(verdict, learner_fn, probe() if callable(probe) else probe)

    limit = TIME_LIMIT_S
    _last_answer.clear()
    try:
        with _session_kept():
            return within(work, limit)
    except KeyboardInterrupt:
        raise
    except OutOfTime as e:
        return _too_slow(limit, background=bool(e.args)), learner_fn
    except BaseException as e:  # noqa: BLE001 - the safety net: an answer the checker could not compare
        return _net_verdict(e), learner_fn


def _net_verdict(error: BaseException) -> Verdict:
    """The last resort, for a failure inside the checker's own logic."""
    if not _last_answer:
        return Verdict(FAIL, f"the check failed before it could judge your function ({type(error).__name__}: "
                             f"{_text(error)}); this is a bug in the course, please report it.")
    return Verdict(FAIL, f"your function returned {describe(_last_answer[0])}, which the checker could not compare: "
                         f"{type(error).__name__}: {_text(error)}. Check its type, shape and dtype against the "
                         "exercise's docstring.")


def _too_slow(limit: float, background: bool) -> Verdict:
    still = (" It is still running in the background: restart the kernel to stop it." if background else "")
    return Verdict(FAIL, f"your function ran for more than {limit:g} s on a small input, so the check stopped it. "
                         "Look for a loop that never ends (a `while` whose condition never changes) or work that "
                         f"grows far beyond the input.{still}")


@contextmanager
def _session_kept() -> Iterator[None]:
    """Whatever the check or the learner's code does, leave the session's RNG and default dtype as they were."""
    cpu_rng, dtype = torch.random.get_rng_state(), torch.get_default_dtype()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        torch.set_default_dtype(torch.float32)  # the checkers' inputs are float32 even if the notebook changed it
        yield
    finally:
        torch.set_default_dtype(dtype)
        torch.random.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


@contextmanager
def _sandbox() -> Iterator[None]:
    """Gradients on, even inside the learner's `with torch.no_grad():` (grad mode is per thread: set it here)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def plain_numbers(verdict: Verdict, fn: Callable, probe: tuple) -> tuple[Verdict, Callable]:
    """After a pass, a learner's function that returns a 0-dim tensor (or a NumPy scalar) is wrapped to return
    a Python number: the notebooks round() and format its results, which a tensor does not support."""
    if verdict.status != PASS:
        return verdict, fn
    value, problem = call_safely(fn, *probe)
    if problem or not (hasattr(value, "item") and getattr(value, "ndim", 1) == 0):
        return verdict, fn

    @functools.wraps(fn)
    def as_number(*args):
        result = fn(*args)
        return result.item() if hasattr(result, "item") and getattr(result, "ndim", 1) == 0 else result

    note = f" (It returns a {type(value).__name__}; from here on its result is turned into a Python number.)"
    return Verdict(PASS, verdict.message + note), as_number


def _marked(reference: Callable) -> Callable:
    """The reference, callable as before (same name, signature and source), marked as a fallback."""
    @functools.wraps(reference)
    def fallback(*args, **kwargs):
        return reference(*args, **kwargs)

    fallback._course_fallback = True
    return fallback
