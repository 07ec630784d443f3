"""The checker contract, tried from the outside (lora_scratch/checks/__init__.py).

Every check_* of every notebook module is fed a battery of pathological learner functions. Each call must print
exactly one verdict line (✅ / ❌ / ⏳), return a callable (the learner's function on ✅, the marked reference
otherwise), never raise or show a traceback, leave torch's global RNG as it was, and stop a slow or endless
function within the time limit it states. The verdicts are written to build/checker_contract.md.
"""
from __future__ import annotations

import contextlib
import io
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from pkgutil import iter_modules

import numpy as np
import pytest
import torch
import torch.nn as nn
from checklib import stub

from lora_scratch import checks
from lora_scratch.checks import core

LIMIT = 0.5  # seconds per check: core.TIME_LIMIT_S lowered, so the slow and endless answers cost little
ROOT = Path(__file__).resolve().parents[1]
VERDICTS = (checks.PASS, checks.FAIL, checks.TODO)
NET = "which the checker could not compare"  # the safety net's words: the battery's answers deserve real hints


def _checker_names() -> list[str]:
    """Every check_* defined in lora_scratch/checks/nbNN.py, found without trusting the package's own export."""
    import importlib

    names = []
    for module in sorted(m.name for m in iter_modules(checks.__path__) if m.name.startswith("nb")):
        names += [n for n in vars(importlib.import_module(f"lora_scratch.checks.{module}")) if n.startswith("check_")]
    return sorted(names)


CHECKERS = _checker_names()


# ---- the battery: each answer is made from the exercise's reference -----------------------------------------

def _map(value, tensor: Callable, number: Callable, module: Callable, seen: list):
    """value with every tensor, number and module converted; seen gets an entry for each conversion."""
    if isinstance(value, nn.Module):
        seen.append(1)
        return module(value)
    if isinstance(value, torch.Tensor):
        seen.append(1)
        return tensor(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seen.append(1)
        return number(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_map(v, tensor, number, module, seen) for v in value)
    if isinstance(value, dict):
        return {k: _map(v, tensor, number, module, seen) for k, v in value.items()}
    return value


def _wrong_dtype(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float16 if t.is_floating_point() else torch.float32)


CONVERSIONS = {  # (tensor, number, module) conversions of the reference's answer
    "wrong dtype": (_wrong_dtype, lambda x: torch.tensor(x, dtype=torch.float16), lambda m: m.half()),
    "meta device": (lambda t: t.detach().to("meta"), lambda x: torch.tensor(x, device="meta"), lambda m: m.to("meta")),
    "float64": (lambda t: t.detach().double() if t.is_floating_point() else t,
                lambda x: torch.tensor(x, dtype=torch.float64), lambda m: m.double()),
}


def _converted(kind: str) -> Callable:
    def make(reference: Callable, note: list) -> Callable:
        def learner(*args, **kwargs):
            return _map(reference(*args, **kwargs), *CONVERSIONS[kind], note)
        return learner
    return make


def _mutate(value, note: list) -> None:
    """Change every tensor inside value in place (modules are left alone: changing them is some exercises' job)."""
    if isinstance(value, torch.Tensor):
        note.append(1)
        with torch.no_grad():
            value.logical_not_() if value.dtype == torch.bool else value.add_(1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _mutate(v, note)
    elif isinstance(value, dict):
        for v in value.values():
            _mutate(v, note)


def _mutating(reference: Callable, note: list) -> Callable:
    def learner(*args, **kwargs):
        copies = _map(args, lambda t: t.clone(), lambda x: x, lambda m: m, [])
        answer = reference(*copies, **kwargs)
        _mutate(args, note)
        return answer
    return learner


def _returns(value) -> Callable:
    return lambda reference, note: (lambda *args, **kwargs: value)


def _raises(reference: Callable, note: list) -> Callable:
    def learner(*args, **kwargs):
        raise ValueError("a bug in the learner's code")
    return learner


def _exits(reference: Callable, note: list) -> Callable:
    def learner(*args, **kwargs):
        sys.exit(1)
    return learner


def _sleeps(reference: Callable, note: list) -> Callable:
    def learner(*args, **kwargs):
        time.sleep(LIMIT + 0.3)
        return reference(*args, **kwargs)
    return learner


def _loops(reference: Callable, note: list) -> Callable:
    def learner(*args, **kwargs):
        while True:
            pass
    return learner


ALWAYS_WRONG = {  # no exercise accepts these: each must be ❌
    "raises ValueError": _raises, "sys.exit()": _exits, "None": _returns(None), "NaN": _returns(float("nan")),
    "inf": _returns(float("inf")), "10**400": _returns(10 ** 400), "NumPy array": _returns(np.array([1.0, 2.0])),
    "list": _returns([1.0, 2.0]), "sleeps": _sleeps, "endless": _loops,
}
FROM_REFERENCE = {  # the reference's answer, spoiled: ❌ where it matters, "–" where there was nothing to spoil
    "wrong dtype": _converted("wrong dtype"), "meta device": _converted("meta device"),
    "float64": _converted("float64"), "mutates inputs": _mutating,
}
ANSWERS = {"reference": lambda reference, note: reference.__wrapped__, **ALWAYS_WRONG, **FROM_REFERENCE}
SLOW = ("sleeps", "endless")
RESULTS: dict[str, dict[str, tuple[str, str]]] = {}


# ---- running one check ------------------------------------------------------------------------------------

def _run(checker: Callable, fn: Callable) -> tuple[Callable, str, float]:
    out, err = io.StringIO(), io.StringIO()
    rng = torch.random.get_rng_state()
    start = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        returned = checker(fn)  # must not raise: a failure here is the test's finding
    elapsed = time.monotonic() - start
    text = out.getvalue() + err.getvalue()
    assert torch.equal(torch.random.get_rng_state(), rng), "the check changed torch's global RNG"
    assert "Traceback" not in text, text
    return returned, text, elapsed


def _verdict_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith(VERDICTS)]
    assert len(lines) == 1, f"expected exactly one verdict line, got {len(lines)}:\n{text}"
    return lines[0]


@pytest.fixture(scope="module", autouse=True)
def _matrix():
    yield
    if RESULTS:
        _write_matrix(ROOT / "build" / "checker_contract.md")


@pytest.fixture
def fast_limit(monkeypatch):
    monkeypatch.setattr(core, "TIME_LIMIT_S", LIMIT)


@pytest.mark.parametrize("name", CHECKERS)
def test_checker_keeps_its_contract(name: str, fast_limit) -> None:
    checker = getattr(checks, name)
    with contextlib.redirect_stdout(io.StringIO()):
        reference = checker(stub)  # ⏳: the marked reference comes back
    row = RESULTS.setdefault(name, {})
    for answer, make in ANSWERS.items():
        note: list = []
        fn = make(reference, note)
        returned, text, elapsed = _run(checker, fn)
        line = _verdict_line(text)
        row[answer] = (line[0] if note or answer not in FROM_REFERENCE else "–", line)
        assert callable(returned), f"{name} returned {returned!r} for {answer}"
        if not line.startswith(checks.PASS):
            assert getattr(returned, "_course_fallback", False), f"{answer}: {line}"
        assert NET not in line and "bug in the course" not in line, f"{name}, {answer}: the net, not a hint: {line}"
        if answer in ALWAYS_WRONG:
            assert line.startswith(checks.FAIL), f"{name}, {answer}: {line}"
        if answer in ("meta device", "mutates inputs") and note:  # a meta answer has no values; an input was spoilt
            assert line.startswith(checks.FAIL), f"{name}, {answer}: {line}"
        if answer in SLOW:
            assert f"more than {LIMIT:g} s" in line and elapsed < LIMIT + 1.5, (elapsed, line)


@pytest.mark.parametrize("name", CHECKERS)
def test_not_done_yet_says_what_to_do_never_the_answer(name: str, capsys) -> None:
    """⏳ names where the notebook's fallback comes from, never code that solves the exercise."""
    getattr(checks, name)(stub)
    out = capsys.readouterr().out
    assert out.startswith(checks.TODO) and "replace the `raise NotImplementedError(...)` line" in out, out
    named = re.search(r"the reference `([^`]*)`", out).group(1)
    assert re.fullmatch(r"[A-Za-z_][\w.]*", named), f"⏳ shows code, not a name: {named}"


def test_every_notebook_module_is_checked() -> None:
    """The battery covers every checker the notebooks can call, and each of nb00-nb13 has some."""
    exported = sorted(n for n in checks.__all__ if n.startswith("check_"))
    assert CHECKERS == exported and len(CHECKERS) >= 47
    modules = {m.name for m in iter_modules(checks.__path__) if m.name.startswith("nb")}
    assert {f"nb{i:02d}" for i in range(14)} <= modules


# ---- the time limit, the stop button and the session, one at a time -------------------------------------

def test_the_alarm_is_put_back(fast_limit) -> None:
    """After a check that ran out of time, no timer is left running and the previous SIGALRM handler is back."""
    before = signal.getsignal(signal.SIGALRM)
    _, text, _ = _run(checks.check_perplexity, _loops(None, []))
    assert "more than 0.5 s" in _verdict_line(text)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0) and signal.getsignal(signal.SIGALRM) is before


def test_someone_elses_timer_keeps_running(fast_limit) -> None:
    """A timer set before the check (pytest-timeout uses one) gets back what is left of it."""
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        _run(checks.check_perplexity, _loops(None, []))
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 25.0 < left < 30.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_swallowed_alarm_fires_again(fast_limit) -> None:
    """A learner's bare `except:` around a slow part cannot keep the check running: the alarm comes back."""
    def stubborn(loss):
        try:
            while True:
                pass
        except BaseException:  # noqa: BLE001 - the learner's mistake under test
            pass
        while True:
            pass

    _, text, elapsed = _run(checks.check_perplexity, stubborn)
    assert elapsed < LIMIT + 1.5 and "more than 0.5 s" in _verdict_line(text)


def test_time_spent_importing_does_not_count(fast_limit, tmp_path, monkeypatch) -> None:
    """torch imports sympy lazily (seconds, the first time an optimizer or a meta tensor is used): a correct
    function that triggers a slow import is not "too slow", and the import is not cut in half."""
    (tmp_path / "slow_to_import_for_a_check.py").write_text(f"import time\ntime.sleep({LIMIT + 0.5})\nDONE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def imports_then_answers(loss):
        import math

        import slow_to_import_for_a_check  # noqa: F401 - the slow import is the point

        return math.exp(loss)

    try:
        _, text, _ = _run(checks.check_perplexity, imports_then_answers)
        assert _verdict_line(text).startswith(checks.PASS), text
        assert sys.modules["slow_to_import_for_a_check"].DONE
    finally:
        sys.modules.pop("slow_to_import_for_a_check", None)


def test_without_sigalrm_a_worker_thread_bounds_the_check(fast_limit) -> None:
    """Off the main thread (and on Windows) the check waits at most the limit, then says the call runs on."""
    stop = threading.Event()

    def endless(loss):
        while not stop.is_set():
            time.sleep(0.01)

    result: list = []
    worker = threading.Thread(target=lambda: result.append(_run(checks.check_perplexity, endless)))
    worker.start()
    worker.join(10)
    stop.set()
    returned, text, elapsed = result[0]
    line = _verdict_line(text)
    assert line.startswith(checks.FAIL) and "still running in the background" in line and elapsed < LIMIT + 1.5
    assert getattr(returned, "_course_fallback", False)


@pytest.mark.parametrize("name", ["check_init_lora", "check_inject_lora", "check_lora_optimizer",
                                  "check_merged_linear", "check_loraplus_param_groups"])
def test_the_notebooks_random_stream_goes_on_as_if_no_check_ran(name: str) -> None:
    """Four of these checkers seed torch to build a fixed model, and init_lora draws from it: none may move the
    learner's stream."""
    with contextlib.redirect_stdout(io.StringIO()):
        reference = getattr(checks, name)(stub).__wrapped__
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        getattr(checks, name)(reference)
    assert torch.equal(torch.rand(3), expected)


def test_the_stop_button_still_stops() -> None:
    """KeyboardInterrupt (Jupyter's stop button) is the learner's own request: it ends the cell, as it should."""
    def interrupted(loss):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), contextlib.redirect_stdout(io.StringIO()):
        checks.check_perplexity(interrupted)


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_checks_run_with_gradients_whatever_the_cell_turned_off(mode) -> None:
    from lora_scratch.variants import dora_weight

    with mode():
        _, text, _ = _run(checks.check_dora_weight, dora_weight)
    assert _verdict_line(text).startswith(checks.PASS), text


def test_the_learners_default_dtype_is_kept() -> None:
    from lora_scratch.toy import lora_forward

    torch.set_default_dtype(torch.float64)
    try:
        _, text, _ = _run(checks.check_lora_forward, lora_forward)
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)
    assert _verdict_line(text).startswith(checks.PASS), text


def test_an_unforeseen_answer_meets_the_safety_net(capsys) -> None:
    """When the comparison itself fails on an answer nobody foresaw, the check says what the answer was: a ❌."""
    def judge() -> checks.Verdict:
        answer, _ = core.call_safely(lambda: {"odd": "answer"})
        return checks.Verdict(checks.PASS, "fine") if answer["odd"] + 1 else checks.Verdict(checks.FAIL, "no")

    returned = core.report("odd", judge, lambda: None, lambda: "reference", "the reference")
    out = capsys.readouterr().out
    assert out.startswith(f"{checks.FAIL} odd: your function returned a dict of 1 item, {NET}: TypeError"), out
    assert returned() == "reference" and getattr(returned, "_course_fallback", False)


def test_torchs_not_implemented_is_a_failure_not_an_unfinished_stub(capsys) -> None:
    """NotImplementedError raised inside torch (reading a meta tensor) is a bug, not the exercise's stub."""
    def reads_meta(loss):
        return torch.ones(1, device="meta").tolist()[0]

    checks.check_perplexity(reads_meta)
    assert capsys.readouterr().out.startswith(checks.FAIL)


# ---- the matrix for the closing note -------------------------------------------------------------------------

def _write_matrix(path: Path) -> None:
    answers = list(ANSWERS)
    counts = {v: sum(cell[0] == v for row in RESULTS.values() for cell in row.values()) for v in (*VERDICTS, "–")}
    lines = ["# Checker contract: checkers × pathological answers → verdict", "",
             f"Written by tests/test_checker_contract.py: {len(RESULTS)} checkers × {len(answers)} answers, time limit "
             f"{LIMIT:g} s. Every cell printed one verdict line, returned a callable, raised nothing, showed no "
             "traceback and left torch's RNG as it was. – : the reference's answer had nothing of that kind to spoil "
             "(so the answer was the reference's own).", "",
             "Totals: " + ", ".join(f"{v} {n}" for v, n in counts.items()), "",
             "| checker | " + " | ".join(answers) + " |", "|---|" + "---|" * len(answers)]
    for name, row in RESULTS.items():
        lines.append(f"| {name} | " + " | ".join(row[a][0] if a in row else "?" for a in answers) + " |")
    lines += ["", "## What each checker printed", ""]
    for name, row in RESULTS.items():
        lines += [f"### {name}", ""] + [f"- **{a}**: {line[:300]}" for a, (_, line) in row.items()] + [""]
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
