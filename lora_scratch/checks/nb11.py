"""Checkers for 11_scaling_out: average_gradients, allreduce_bytes, ring_allreduce_bytes, zero_stage_bytes."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn

from .answers import all_close, as_whole, device_dtype_problem, mismatch, none_hint, numbers_from, whole_problem
from .core import FAIL, PASS, Verdict, call_safely, describe, report

# ---------------------------------------------------------------- average_gradients(per_rank)


def _per_rank() -> list[list[torch.Tensor]]:
    """3 ranks x 2 parameters of different shapes: 3 ranks, so dividing by the parameter count (2) shows."""
    g = torch.Generator().manual_seed(11)
    return [[torch.randn(4, 3, generator=g), torch.randn(5, generator=g)] for _ in range(3)]


def _average_mistakes(per_rank: list[list[torch.Tensor]]) -> list[tuple[list[torch.Tensor], str]]:
    summed = [sum(gs) for gs in zip(*per_rank)]
    return [
        (summed, "you summed the gradients but did not divide by the number of ranks (all_reduce(SUM) "
                 "then / world_size): your step would be 3 times too large."),
        ([s / 2 for s in summed], "you divided by the number of parameters (2); divide by the number of "
                                  "ranks, len(per_rank)."),
        (per_rank[0], "you returned rank 0's gradients unchanged; average each parameter over all ranks."),
    ]


def _average_verdict(fn: Callable) -> Verdict:
    per_rank = _per_rank()
    copies = [[g.clone() for g in grads] for grads in per_rank]
    value, problem = call_safely(fn, copies)
    if problem and "size of tensor" in problem.message:  # one rank's parameters added together
        return Verdict(FAIL, f"{problem.message} — you added different parameters together (shapes (4, 3) and "
                             "(5,)); average one parameter over the ranks: zip(*per_rank) groups them.")
    if problem:
        return problem
    if not all(torch.equal(a, b) for ga, gb in zip(copies, per_rank) for a, b in zip(ga, gb)):
        return Verdict(FAIL, "your function changed the input gradients in place; build new tensors instead "
                             "(each rank's own gradient is still needed by its caller).")
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in value):
        return Verdict(FAIL, f"return a list with one tensor per parameter, got {describe(value)}{none_hint(value)}.")
    if len(value) != 2:
        return Verdict(FAIL, f"with 3 ranks of 2 parameters each, return 2 averaged tensors (one per "
                             f"parameter), got {len(value)}. zip(*per_rank) groups one parameter's gradients.")
    expected = [torch.stack(gs).mean(0) for gs in zip(*per_rank)]
    if [tuple(t.shape) for t in value] != [tuple(t.shape) for t in expected]:
        return Verdict(FAIL, f"each average keeps its parameter's shape, (4, 3) and (5,); got "
                             f"{[tuple(t.shape) for t in value]}.")
    problem = next(filter(None, (device_dtype_problem(v, e, f"the average of parameter {i}")
                                 for i, (v, e) in enumerate(zip(value, expected)))), None)
    if problem:
        return problem
    if all(torch.allclose(v, e, atol=1e-6) for v, e in zip(value, expected)):
        return Verdict(PASS, "correct: the mean over ranks of each parameter's gradient — what all_reduce(SUM) "
                             "/ world_size leaves on every rank.")
    for wrong, hint in _average_mistakes(per_rank):
        if all(torch.allclose(v, w, atol=1e-6) for v, w in zip(value, wrong)):
            return Verdict(FAIL, hint)
    return Verdict(FAIL, "the values are wrong: for each parameter i, average per_rank[k][i] over the ranks k.")


def check_average_gradients(fn: Callable) -> Callable:
    from ..data_parallel import average_gradients

    return report("average_gradients", lambda: _average_verdict(fn), fn, average_gradients,
                  "lora_scratch.data_parallel.average_gradients")


# ---------------------------------------------------------------- allreduce_bytes(model)


def _toy_models() -> list[tuple[nn.Module, int]]:
    """(model, expected bytes): frozen 10x10 + trainable 10x2 in fp32 (22 x 4 = 88), then the same in fp64."""
    cases = []
    for dtype in (torch.float32, torch.float64):
        model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2)).to(dtype)
        for p in model[0].parameters():
            p.requires_grad_(False)
        cases.append((model, 22 * torch.tensor([], dtype=dtype).element_size()))
    return cases


def _allreduce_bytes_verdict(fn: Callable) -> Verdict:
    (model, want), (model64, want64) = _toy_models()
    values = []
    for m in (model, model64):
        value, problem = call_safely(fn, m)
        if problem and "NoneType" in problem.message:  # p.grad is None before any backward
            return Verdict(FAIL, f"{problem.message} — p.grad is None until a backward pass has run; count from "
                                 "the parameters themselves: p.numel() * p.element_size() where p.requires_grad.")
        problem = problem or whole_problem(value, "allreduce_bytes(model)", "one number of bytes, an int")
        if problem:
            return problem
        values.append(float(as_whole(value)))
    got, got64 = values
    hints = {132 * 4: "you counted the frozen parameters too: they get no gradient, so nothing of them is "
                      "all-reduced — that is LoRA's saving here.",
             22: "you counted parameters, not bytes: multiply by the bytes per value, p.element_size() (4 for fp32).",
             132: "you counted all parameters, and numbers instead of bytes.",
             22 * 32: "you counted bits; all_reduce moves bytes (4 per fp32 value).",
             22 * 2: "you assumed 2 bytes per value (fp16); these gradients are fp32: use p.element_size().",
             110 * 4: "you counted the frozen parameters instead of the trainable ones: keep p.requires_grad, "
                      "not `not p.requires_grad`."}
    if math.isclose(got, want) and math.isclose(got64, want64):
        return Verdict(PASS, "correct: the trainable parameters' gradients only, numel × element_size bytes.")
    if math.isclose(got, want):
        return Verdict(FAIL, f"right for fp32, but an fp64 model needs {want64} bytes, got {got64:g}: use "
                             "p.element_size() instead of a fixed 4.")
    return Verdict(FAIL, hints.get(int(got), f"a frozen 10x10 Linear plus a trainable 10x2 Linear (22 fp32 "
                                             f"numbers) all-reduce 88 bytes per step; you returned {got:g}."))


def check_allreduce_bytes(fn: Callable) -> Callable:
    from ..data_parallel import allreduce_bytes

    return report("allreduce_bytes", lambda: _allreduce_bytes_verdict(fn), fn, allreduce_bytes,
                  "lora_scratch.data_parallel.allreduce_bytes")


# ---------------------------------------------------------------- ring_allreduce_bytes(n_bytes, world_size)

_RING_CASES = [(1000.0, 1), (1000.0, 2), (1000.0, 4), (800.0, 8), (1000, 64)]  # the last: ints, 1968.75 bytes


def _ring_verdict(fn: Callable) -> Verdict:
    got, problem = numbers_from(fn, _RING_CASES, "ring_allreduce_bytes", "bytes sent per process")
    if problem:
        return problem
    ns = [n for n, _ in _RING_CASES]
    mistakes = [
        ([2 * (w - 1) / w * n for n, w in _RING_CASES], None),
        ([(w - 1) / w * n for n, w in _RING_CASES], "you counted one phase only: the reduce-scatter sends "
                                                    "(N−1)/N of the bytes, and the all-gather as much again."),
        ([2 * n for n in ns], "you forgot the (N−1)/N: each process sends N−1 chunks of n/N per phase "
                              "(and nothing at all when N = 1)."),
        ([(w - 1) * n for n, w in _RING_CASES], "that is every process sending its whole buffer to every "
                                                "other one; a ring sends chunks of n/N, 2 (N−1) of them."),
        ([2 * (w - 1) * n for n, w in _RING_CASES], "you forgot that each chunk is n_bytes / N: 2 (N−1) chunks "
                                                    "of n/N each."),
        (ns, "a ring all-reduce does not send exactly n_bytes: 2 (N−1)/N × n_bytes, which is n_bytes only "
             "for N = 2."),
    ]
    for expected, hint in mistakes:
        if all_close(got, expected):
            if hint is None:
                return Verdict(PASS, "correct: 2 (N−1)/N × n_bytes per process — nearly 2 × n_bytes for large N, "
                                     "whatever the number of processes.")
            return Verdict(FAIL, hint)
    want = mistakes[0][0]
    if all(g == int(g) for g in got) and all_close(got, [math.floor(w) for w in want]):
        return Verdict(FAIL, "you rounded down (// or int()): ring_allreduce_bytes(1000, 64) is 2 × 63/64 × 1000 = "
                             f"1968.75, not {got[-1]:g}. Divide with /; bytes per process need not be whole.")
    return Verdict(FAIL, mismatch("ring_allreduce_bytes", _RING_CASES, got, want) + " It is 2 (N−1)/N × n_bytes.")


def check_ring_allreduce_bytes(fn: Callable) -> Callable:
    from ..data_parallel import ring_allreduce_bytes

    return report("ring_allreduce_bytes", lambda: _ring_verdict(fn), fn, ring_allreduce_bytes,
                  "lora_scratch.data_parallel.ring_allreduce_bytes")


# ---------------------------------------------------------------- zero_stage_bytes(n_params, n_devices, stage)

_PAPER_GB = [120.0, 31.4, 16.6, 1.9]  # ZeRO (Rajbhandari et al., 2019), Figure 1: Ψ = 7.5B, N_d = 64, K = 12


def _zero_mistake(gb: list[float]) -> str:
    if gb[0] != 120.0:
        return (f"stage 0 (plain data parallel) keeps everything on every device: (2 + 2 + 12) Ψ = 16 × 7.5e9 "
                f"= 120 GB; you gave {gb[0]:g} GB. Did you forget the 2Ψ fp16 weights or the 2Ψ gradients?")
    if gb[1] == 16.6:
        return "your stage 1 already shards the gradients; stage 1 shards only the optimizer state (P_os)."
    if gb[1] == 1.9 or gb[2] == 1.9:
        return "you shard the weights too early: only stage 3 (P_os+g+p) partitions the fp16 weights."
    if gb[1] != 31.4:
        return ("stage 1 divides only the optimizer state by N_d: 2Ψ + 2Ψ + 12Ψ / N_d = 31.4 GB for the "
                f"paper's example; you gave {gb[1]:g} GB.")
    if gb[2] != 16.6:
        return f"stage 2 also divides the gradients: 2Ψ + (2 + 12) Ψ / N_d = 16.6 GB; you gave {gb[2]:g} GB."
    return f"stage 3 divides everything: (2 + 2 + 12) Ψ / N_d = 1.9 GB; you gave {gb[3]:g} GB."


def _zero_second_case(fn: Callable) -> Verdict | None:
    """1e9 parameters on 8 devices: a function with the paper's 7.5e9 or 64 built in is right only for the paper."""
    got, problem = numbers_from(fn, [(1e9, 8, s) for s in range(4)], "zero_stage_bytes", "bytes per device")
    if problem:
        return problem
    want = [16e9, 4e9 + 12e9 / 8, 2e9 + 14e9 / 8, 16e9 / 8]
    if all_close(got, want):
        return None
    return Verdict(FAIL, f"right for the paper's example, but zero_stage_bytes(1e9, 8, stage) for stages 0-3 should "
                         f"be {', '.join(f'{v:.3g}' for v in want)} bytes; you gave "
                         f"{', '.join(f'{v:.3g}' for v in got)}: use n_params and n_devices, not 7.5e9 and 64.")


def _zero_verdict(fn: Callable) -> Verdict:
    got, problem = numbers_from(fn, [(7.5e9, 64, s) for s in range(4)], "zero_stage_bytes", "bytes per device")
    if problem:
        return problem
    gb = [round(v / 1e9, 1) for v in got]
    if all_close(got, _PAPER_GB, rel_tol=0.02):
        return Verdict(FAIL, "these look like GB already; return bytes (7.5e9 parameters × 16 bytes = 1.2e11).")
    if gb != _PAPER_GB:
        return Verdict(FAIL, _zero_mistake(gb))
    problem = _zero_second_case(fn)
    if problem:
        return problem
    return Verdict(PASS, "correct: 120, 31.4, 16.6 and 1.9 GB per device for 7.5B parameters on 64 devices — "
                         "the ZeRO paper's Figure 1.")


def check_zero_stage_bytes(fn: Callable) -> Callable:
    from ..data_parallel import zero_stage_bytes

    return report("zero_stage_bytes", lambda: _zero_verdict(fn), fn, zero_stage_bytes,
                  "lora_scratch.data_parallel.zero_stage_bytes")
