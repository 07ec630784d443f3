"""Checkers for 04_memory_breakdown: adam_state_bytes, training_bytes_per_param, lora_memory_saving."""
from __future__ import annotations

import math
from collections.abc import Callable

from .answers import mismatch, numbers_from, shown
from .core import FAIL, PASS, Verdict, report

PRECISIONS = ("fp32", "bf16", "mixed")
OPTIMIZERS = ("adam", "sgd_momentum", "sgd")


def _matches(got: list[float], cases: list[tuple], rule: Callable) -> bool:
    return all(math.isclose(g, rule(*args), rel_tol=1e-6, abs_tol=1e-12) for g, args in zip(got, cases))  # float32-safe


ADAM_CASES = [(1000, 4), (124_439_808, 4), (10, 2), (7, 1)]
ADAM_MISTAKES = [
    (lambda n, b: n * b, "that is one state per parameter; Adam keeps two, m (the running mean of the "
                         "gradient) and v (the running mean of its square)."),
    (lambda n, b: 2 * n, "you counted numbers, not bytes: multiply by bytes_per_value."),
    (lambda n, b: 3 * n * b, "that is three values per parameter; the optimizer state is m and v only (the "
                             "weight itself and its gradient are separate parts)."),
    (lambda n, b: 4 * n * b, "that is four values per parameter: weight + gradient + m + v. Count m and v only."),
    (lambda n, b: 16 * n * b, "you multiplied by 8 bits as well; bytes_per_value is already in bytes."),
    (lambda n, b: 2 * n * b + 4, "you added a 4-byte step counter: PyTorch keeps one per tensor (see the table "
                                 "above), but this exercise counts m and v only, 2 · n_params · bytes_per_value."),
]


def _adam_verdict(fn: Callable) -> Verdict:
    got, problem = numbers_from(fn, ADAM_CASES, "adam_state_bytes", "a number of bytes")
    if problem:
        return problem
    if _matches(got, ADAM_CASES, lambda n, b: 2 * n * b):
        return Verdict(PASS, "correct: m and v, one value each per parameter.")
    for rule, hint in ADAM_MISTAKES:
        if _matches(got, ADAM_CASES, rule):
            return Verdict(FAIL, hint)
    return Verdict(FAIL, mismatch("adam_state_bytes", ADAM_CASES, got, [2 * n * b for n, b in ADAM_CASES])
                   + " Adam keeps 2 states (m and v) x n_params x bytes_per_value.")


def check_adam_state_bytes(fn: Callable) -> Callable:
    from ..memory import adam_state_bytes

    return report("adam_state_bytes", lambda: _adam_verdict(fn), fn, adam_state_bytes,
                  "lora_scratch.memory.adam_state_bytes", probe=(1000, 4))


BYTES = {"fp32": (4, 4, 4, 0), "bf16": (2, 2, 2, 0), "mixed": (2, 2, 4, 4)}  # weight, grad, state, master
STATES = {"adam": 2, "sgd_momentum": 1, "sgd": 0}


def _rule(master: bool = True, grad: bool = True, adam_states: int = 2, mixed_state: int = 4) -> Callable:
    """Bytes per parameter under a (possibly wrong) accounting rule."""
    def rule(precision: str, optimizer: str) -> float:
        w, g, s, m = BYTES[precision]
        s = mixed_state if precision == "mixed" else s
        n = adam_states if optimizer == "adam" else STATES[optimizer]
        return w + (g if grad else 0) + (m if master else 0) + n * s
    return rule


TRAINING_CASES = [(p, o) for p in PRECISIONS for o in OPTIMIZERS]
TRAINING_MISTAKES = [
    (_rule(master=False), "mixed precision with Adam came out at 12: you forgot the fp32 master copy of the "
                          "weights (4 bytes) that the optimizer updates; the ZeRO total is 2 + 2 + 12 = 16."),
    (_rule(master=False, mixed_state=2), "in mixed precision the optimizer keeps m and v in fp32 (4 bytes "
                                         "each) plus an fp32 master copy of the weights."),
    (_rule(mixed_state=2), "in mixed precision m and v are fp32 (4 bytes each), not 16-bit."),
    (_rule(grad=False), "you left out the gradient: every trainable parameter has one, in the weight's format."),
    (_rule(adam_states=1), "Adam keeps two states per parameter (m and v), not one."),
]


def _wrong_cells(got: list[float]) -> list[str]:
    cells = []
    for g, (p, o) in zip(got, TRAINING_CASES):
        if not math.isclose(g, _rule()(p, o)):
            shown_got, shown_want = shown(g, _rule()(p, o))
            cells.append(f"{p}/{o}: {shown_got} (expected {shown_want})")
    return cells


def _training_verdict(fn: Callable) -> Verdict:
    got, problem = numbers_from(fn, TRAINING_CASES, "training_bytes_per_param", "bytes per parameter")
    if problem:
        return problem
    if _matches(got, TRAINING_CASES, _rule()):
        return Verdict(PASS, "correct: 16 bytes for Adam in fp32 and in mixed precision, made up differently.")
    for rule, hint in TRAINING_MISTAKES:
        if _matches(got, TRAINING_CASES, rule):
            return Verdict(FAIL, hint)
    wrong = _wrong_cells(got)
    return Verdict(FAIL, "wrong for " + "; ".join(wrong[:3]) + ". Use the table: weight + gradient + master "
                         "copy (mixed only) + states x bytes per state.")


def check_training_bytes_per_param(fn: Callable) -> Callable:
    from ..memory import training_bytes_per_param

    return report("training_bytes_per_param", lambda: _training_verdict(fn), fn, training_bytes_per_param,
                  "lora_scratch.memory.training_bytes_per_param", probe=("fp32", "adam"))


SAVING_CASES = [(124_439_808, 294_912, 102_117_892.0), (1_000_000, 10_000, 0.0), (1_000_000, 10_000, 5e7),
                (2_000_000, 30_720, 524_158_980.0)]
SAVING_MISTAKES = [
    (lambda p, n, a: 1 - (4 * p + 16 * n) / (16 * p), "you left the activations out. They are in both totals "
                                                       "and LoRA does not remove them, so the saving is smaller."),
    (lambda p, n, a: 1 - (4 * p + 16 * n + a * n / p) / (16 * p + a), "you shrank the activations with the "
     "number of trainable parameters. Activations come from the batch and the sequence flowing through the "
     "*whole* network, frozen layers included: they stay."),
    (lambda p, n, a: 1 - (16 * n + a) / (16 * p + a), "the frozen weights still sit in memory: LoRA keeps all "
                                                      "P of them (4 bytes each in fp32), it only stops training them."),
    (lambda p, n, a: (4 * p + 16 * n + a) / (16 * p + a), "you returned the share LoRA *keeps*; the saving is "
                                                          "1 minus that."),
    (lambda p, n, a: 100 * (1 - (4 * p + 16 * n + a) / (16 * p + a)), "return a fraction between 0 and 1, not a "
                                                                      "percentage."),
    (lambda p, n, a: 1 - (4 * (p - n) + 16 * n + a) / (16 * p + a), "n_params is the base model alone: every one of "
                                                                    "them stays frozen under LoRA, and the adapter's "
                                                                    "n_lora parameters come on top, not out of it."),
]


def _lora_saving(p: int, n: int, a: float) -> float:
    return 1 - (4 * p + 16 * n + a) / (16 * p + a)


def _saving_verdict(fn: Callable) -> Verdict:
    got, problem = numbers_from(fn, SAVING_CASES, "lora_memory_saving", "a fraction")
    if problem:
        return problem
    if _matches(got, SAVING_CASES, _lora_saving):
        return Verdict(PASS, "correct: LoRA removes 12 of the 16 bytes per frozen parameter, and nothing else.")
    for rule, hint in SAVING_MISTAKES:
        if _matches(got, SAVING_CASES, rule):
            return Verdict(FAIL, hint)
    return Verdict(FAIL, mismatch("lora_memory_saving", SAVING_CASES, got, [_lora_saving(*c) for c in SAVING_CASES])
                   + " Add up, for each method, the bytes per parameter it keeps (weights, gradients, Adam's m "
                     "and v) and the activations, then compare the two totals.")


def check_lora_memory_saving(fn: Callable) -> Callable:
    from ..memory import lora_memory_saving

    return report("lora_memory_saving", lambda: _saving_verdict(fn), fn, lora_memory_saving,
                  "lora_scratch.memory.lora_memory_saving", probe=(1_000_000, 10_000, 0.0))
