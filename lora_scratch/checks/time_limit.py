"""The time bound of a check: the learner's code is interrupted (or abandoned) after a limit.

On POSIX in the main thread (Jupyter runs cells there) a SIGALRM tick every 0.1 s interrupts the learner's code with
OutOfTime once the limit is used up — again at every tick, should a bare `except:` swallow one. Time spent importing
modules does not count, and an import is never interrupted (that would leave a module half-made for the session).
Elsewhere (Windows, a thread) the check runs in a worker thread and is abandoned after the limit (imports included):
Python cannot stop a thread, so the runaway call goes on in the background.
"""
from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable


class OutOfTime(BaseException):
    """Raised inside the learner's code when a check runs past its limit (core.TIME_LIMIT_S); a BaseException, so
    that a learner's `except Exception:` cannot swallow it."""


def within(work: Callable, limit: float):
    """work(), interrupted with OutOfTime after `limit` seconds (SIGALRM), or abandoned (a worker thread)."""
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        return _with_alarm(work, limit)
    return _in_worker_thread(work, limit)


TICK_S = 0.1  # how often the clock looks at what the check is doing
MAX_IMPORT_S = 60.0  # import time beyond this counts again: a loop of imports must not run forever


class _Alarm:
    """SIGALRM every TICK_S; once the check has used `limit` seconds, not counting time spent importing modules,
    each tick raises OutOfTime in the running code (so a bare `except:` that swallows one meets the next)."""

    def __init__(self, limit: float):
        self.limit, self.armed = limit, False

    def __enter__(self) -> _Alarm:
        self.previous = signal.signal(signal.SIGALRM, self._tick)
        self.start = self.last = time.monotonic()
        self.excluded, self.armed = 0.0, True
        self.outer = signal.setitimer(signal.ITIMER_REAL, TICK_S, TICK_S)
        return self

    def _tick(self, signum, frame) -> None:
        if not self.armed:
            return
        now = time.monotonic()
        since, self.last = now - self.last, now
        if _importing(frame):  # never interrupted: that would leave the module half-made for the session
            self.excluded += since if self.excluded < MAX_IMPORT_S else 0.0
        elif now - self.start - self.excluded >= self.limit:
            raise OutOfTime

    def stop(self) -> None:
        """Idempotent: called twice, since a tick may cut the first call short before it disarms."""
        if not self.armed:
            return
        self.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous if self.previous is not None else signal.SIG_DFL)
        if self.outer[0] > 0:  # someone else's timer (e.g. pytest-timeout) was running: give it back what is left
            left = max(self.outer[0] - (time.monotonic() - self.start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, self.outer[1])

    def __exit__(self, *exc) -> None:
        self.stop()


def _importing(frame) -> bool:
    """True while Python imports a module: torch imports sympy lazily (seconds, the first time an optimizer or a
    meta tensor is used), and that time is neither the learner's nor safe to interrupt."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _with_alarm(work: Callable, limit: float):
    alarm = _Alarm(limit)
    try:
        with alarm:
            return work()
    finally:
        alarm.stop()


def _in_worker_thread(work: Callable, limit: float):
    """The fallback without SIGALRM: wait at most `limit` seconds for the check, then give up on it."""
    result: list = []

    def run() -> None:
        try:
            result.append((True, work()))
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread, which decides
            result.append((False, e))

    worker = threading.Thread(target=run, daemon=True, name="lora_scratch check")
    worker.start()
    worker.join(limit)
    if not result:
        raise OutOfTime("still running")  # the worker cannot be stopped: say so
    ok, value = result[0]
    if not ok:
        raise value
    return value
