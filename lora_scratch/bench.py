"""The one timing helper every measurement in the course uses.

On a small, shared CPU, two back-to-back timings of the *same* model swung 0.9-1.4x here (other jobs,
caches, frequency scaling). Four habits make the numbers mean something:

1. a fixed thread count (`fixed_threads`), since tiny matmuls get slower with more threads;
2. warm-up calls before timing (first calls allocate memory and pick kernels);
3. interleaved rounds A B A B ... (`compare`), so a slow moment of the machine hits every candidate;
4. the median and its spread, reported as ratios within one run (`ratio`), never raw times across runs.

    results = compare({"base": lambda: base(x), "lora": lambda: lora(x)}, rounds=15)
    print(format_table(results, baseline="base"))
    timing_claim(ratio(results, "lora", "base"), "<", 1.2, "unmerged LoRA costs less than 20 % more")

A notebook never asserts a time: nbval runs it on machines that are busy. `timing_claim` prints whether the
claim held in this run; `make bench` (scripts/bench_course.py, on a quiet machine) sets LORA_SCRATCH_TIMING=strict
and then a claim that does not hold fails the notebook.
"""
from __future__ import annotations

import operator
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.overrides import TorchFunctionMode


@dataclass
class Timing:
    """The per-call times (seconds) of one candidate, one entry per round."""

    name: str
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return float(np.median(self.times))

    @property
    def spread(self) -> tuple[float, float]:
        """The interquartile range (25th, 75th percentile): half the rounds fall inside it."""
        q1, q3 = np.percentile(self.times, [25, 75])
        return float(q1), float(q3)


@contextmanager
def fixed_threads(n: int | None) -> Iterator[None]:
    """Run the block with exactly n intra-op threads, then restore the previous setting."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _sync(device: str | None) -> None:
    if device and device.startswith("cuda"):
        torch.cuda.synchronize()  # GPU work is asynchronous: wait before reading the clock


def schedule(names: list[str], rounds: int) -> list[str]:
    """The order calls are timed in: A B C, A B C, ... (interleaved, never all A then all B)."""
    return [name for _ in range(rounds) for name in names]


def compare(fns: dict[str, Callable[[], object]], rounds: int = 9, warmup: int = 2, repeat: int = 1,
            threads: int | None = None, device: str | None = None, grad: bool = False,
            timer: Callable[[], float] = time.perf_counter) -> dict[str, Timing]:
    """Time every candidate in interleaved rounds; each round's time is the mean of `repeat` calls.

    `repeat` > 1 averages very short calls (< 1 ms) inside one round; the median is taken across rounds.
    Autograd is off (inference) unless grad=True (training steps).
    """
    if rounds < 1 or warmup < 0 or repeat < 1:
        raise ValueError(f"need rounds >= 1, warmup >= 0, repeat >= 1; got {rounds}, {warmup}, {repeat}")
    results = {name: Timing(name) for name in fns}
    with fixed_threads(threads), torch.set_grad_enabled(grad):
        for name in schedule(list(fns), warmup):
            fns[name]()
        for name in schedule(list(fns), rounds):
            _sync(device)
            start = timer()
            for _ in range(repeat):
                fns[name]()
            _sync(device)
            results[name].times.append((timer() - start) / repeat)
    return results


def ratio(results: dict[str, Timing], a: str, b: str) -> float:
    """median(a) / median(b): above 1 means a is slower than b. Both measured in the same run."""
    return results[a].median / results[b].median


def format_table(results: dict[str, Timing], baseline: str, unit: str = "ms") -> str:
    """One line per candidate: median, interquartile range, and the ratio to the baseline."""
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]
    lines = [f"{'':24s} {'median ' + unit:>12s} {'IQR ' + unit:>17s} {'vs ' + baseline:>12s}"]
    for name, t in results.items():
        q1, q3 = t.spread
        lines.append(f"{name:24s} {t.median * scale:12.3f} {q1 * scale:8.3f}-{q3 * scale:<8.3f} "
                     f"{ratio(results, name, baseline):11.2f}x")
    return "\n".join(lines)


class _OpCounter(TorchFunctionMode):
    """Counts every torch function / Tensor method call: a deterministic proxy for per-op overhead."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], object]) -> int:
    """How many torch operations one call of fn dispatches (the same on every machine)."""
    with torch.no_grad(), _OpCounter() as counter:
        fn()
    return counter.count


def speedup_ratio(times_a: list[float], times_b: list[float]) -> float:
    """How many times faster A is than B: median(B) / median(A). Medians, since one slow round
    (another job on the machine) moves a mean but not a median."""
    return float(np.median(times_b) / np.median(times_a))


STRICT_TIMING_ENV = "LORA_SCRATCH_TIMING"  # "strict" in make bench: a timing claim that fails raises
_COMPARE = {"<": operator.lt, ">": operator.gt}


def timing_claim(value: float, op: str, bound: float, claim: str) -> None:
    """Print whether a claim about a measured time ratio held in this run (value op bound), e.g.
    timing_claim(r, ">", 2, "batching 8 samples is more than twice as fast").

    Only `make bench` asserts it (LORA_SCRATCH_TIMING=strict): elsewhere the machine may be busy, and a time is
    not a fact about the code. Deterministic proxies (operation counts, FLOPs, bytes) are asserted everywhere."""
    if op not in _COMPARE:
        raise ValueError(f"op must be '<' or '>', got {op!r}")
    held = bool(_COMPARE[op](value, bound))
    verdict = "holds in this run" if held else "does not hold in this run (a busy machine? `make bench` checks it)"
    print(f"timing claim: {claim}: {value:.2f} {op} {bound:g} {verdict}")
    if not held and os.environ.get(STRICT_TIMING_ENV) == "strict":
        raise AssertionError(f"timing claim failed under make bench: {claim} ({value:.2f} {op} {bound:g})")
