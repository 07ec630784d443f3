"""Checkers for 09_qlora_nf4_from_scratch: normal_quantile, absmax_quantize, pack_nibbles, bits_per_param."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .answers import as_number, call_with_copies, device_problem, none_hint, number_problem
from .core import FAIL, PASS, Verdict, describe, report

# ---------------------------------------------------------------- normal_quantile(p)

_P = torch.tensor([0.025, 0.1, 0.3, 0.5, 0.8, 0.9677083], dtype=torch.float64)


def _quantile_mistakes(p: torch.Tensor) -> list[tuple[torch.Tensor, str]]:
    q = math.sqrt(2) * torch.erfinv(2 * p - 1)
    return [
        (q / math.sqrt(2), "you forgot the factor √2: Φ⁻¹(p) = √2 · erfinv(2p − 1)."),
        (math.sqrt(2) * torch.erfinv(p), "erfinv takes 2p − 1, not p: Φ(x) = ½(1 + erf(x / √2)), solve for x."),
        (-q, "the sign is flipped: Φ⁻¹(p) is negative for p < 0.5."),
        (0.5 * (1 + torch.erf(p / math.sqrt(2))), "that is the CDF Φ(p) itself; the quantile is its inverse "
                                                   "(use torch.erfinv)."),
    ]


def _normal_quantile_verdict(fn: Callable) -> Verdict:
    value, problem = call_with_copies(fn, (_P,), ("p",))
    if problem:
        return problem
    if not isinstance(value, torch.Tensor) or value.shape != _P.shape:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else describe(value) + none_hint(value)
        return Verdict(FAIL, f"return a tensor of p's shape {tuple(_P.shape)}, one quantile per entry; got {shape}.")
    problem = device_problem(value, "cpu", "normal_quantile(p)")
    if problem:
        return problem
    if value.dtype != torch.float64:
        return Verdict(FAIL, f"for a float64 p your function returns {value.dtype}: compute in float64 and return it "
                             "(NF4's levels are checked to 1e-6 below, beyond float32's precision).")
    expected = math.sqrt(2) * torch.erfinv(2 * _P - 1)
    value = value.double()
    if torch.allclose(value, expected, atol=1e-5):
        return _float64_problem(fn) or Verdict(
            PASS, "correct: Φ⁻¹(p) = √2 · erfinv(2p − 1); Φ⁻¹(0.5) = 0 and Φ⁻¹(0.025) ≈ −1.96.")
    for wrong, hint in _quantile_mistakes(_P):
        if torch.allclose(value, wrong, atol=1e-5):
            return Verdict(FAIL, hint)
    return Verdict(FAIL, "the values are wrong: Φ⁻¹(0.5) must be 0 and Φ⁻¹(0.025) ≈ −1.960 "
                         "(Φ⁻¹(p) = √2 · erfinv(2p − 1)).")


def _float64_problem(fn: Callable) -> Verdict | None:
    """Right values for float64 p; a float32 p (torch.tensor(0.5)) must come back float64 too."""
    value, problem = call_with_copies(fn, (_P.float(),), ("p",))
    if problem:
        return problem
    if isinstance(value, torch.Tensor) and value.dtype != torch.float64:
        return Verdict(FAIL, f"right values, but for a float32 p you return {value.dtype}: compute in float64, "
                             "p = torch.as_tensor(p, dtype=torch.float64) first (NF4 is checked to 1e-6 below).")
    return None


def check_normal_quantile(fn: Callable) -> Callable:
    from ..quant import normal_quantile

    return report("normal_quantile", lambda: _normal_quantile_verdict(fn), fn, normal_quantile,
                  "lora_scratch.quant.normal_quantile")


# ---------------------------------------------------------------- absmax_quantize(x, bits)

def _absmax_case() -> torch.Tensor:
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(9))
    x[1, 4] = -5.0  # this row's largest magnitude is negative: max() and abs().max() differ
    x[2] *= 0.01  # a row on a much smaller scale: one absmax per row matters
    return x


def _absmax_shape_problem(value, x: torch.Tensor) -> Verdict | None:
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(t, torch.Tensor) for t in value)):
        return Verdict(FAIL, f"return the pair (codes, absmax) of two tensors, got {describe(value)}"
                             f"{none_hint(value)}.")
    codes, absmax = value
    problem = device_problem(codes, x.device, "codes") or device_problem(absmax, x.device, "absmax")
    if problem:
        return problem
    if not absmax.is_floating_point():
        return Verdict(FAIL, f"absmax should be a float tensor (it scales the codes back), got {absmax.dtype}.")
    if codes.shape != x.shape:
        return Verdict(FAIL, f"codes must have x's shape {tuple(x.shape)}, got {tuple(codes.shape)}.")
    if absmax.numel() == 1:
        return Verdict(FAIL, "you used one absmax for the whole tensor; take one per row: "
                             "x.abs().amax(dim=-1, keepdim=True), shape (rows, 1).")
    if tuple(absmax.shape) != (x.shape[0], 1):
        return Verdict(FAIL, f"absmax must be one number per row with keepdim, shape ({x.shape[0]}, 1); "
                             f"got {tuple(absmax.shape)}.")
    if codes.dtype != torch.int8:
        return Verdict(FAIL, f"codes must be stored as torch.int8 (that is the point: 1 byte each), got {codes.dtype}.")
    return None


def _absmax_value_hint(codes: torch.Tensor, absmax: torch.Tensor, x: torch.Tensor, bits: int) -> str | None:
    qmax = 2 ** (bits - 1) - 1
    true_absmax = x.abs().amax(-1, keepdim=True)
    if torch.allclose(absmax, x.amax(-1, keepdim=True)) and not torch.allclose(absmax, true_absmax):
        return "you took max(x), not max(|x|): a large negative entry must set the scale too (x.abs().amax(...))."
    if torch.allclose(absmax, true_absmax / qmax):
        return "return the absmax itself, not absmax / qmax: dequantizing is codes · absmax / qmax."
    exact = x / true_absmax * qmax
    if torch.equal(codes, exact.trunc().to(torch.int8)):
        return "you truncated instead of rounding: .to(torch.int8) cuts off the fraction; use torch.round first."
    if bits != 8 and torch.equal(codes, torch.round(x / true_absmax * 127).to(torch.int8)):
        return f"with bits={bits} you still scaled to 127: compute qmax = 2 ** (bits − 1) − 1 from bits (7 for 4 bits)."
    for wrong_qmax in (2 ** bits - 1, 2 ** (bits - 1)):
        if torch.equal(codes, torch.round(x / true_absmax * wrong_qmax).to(torch.int8)):
            return (f"you scaled to {wrong_qmax}; with {bits} bits the symmetric range is ±(2^(bits−1) − 1) = "
                    f"±{qmax} (and 128 does not even fit in int8).")
    return None


def _absmax_quantize_verdict(fn: Callable) -> Verdict:
    x = _absmax_case()
    for bits in (8, 4):
        value, problem = call_with_copies(fn, (x, bits), ("x", "bits"))
        if problem and "size of tensor" in problem.message:  # x / absmax without keepdim does not broadcast
            return Verdict(FAIL, f"{problem.message} — take the absmax with keepdim=True, shape (rows, 1), so "
                                 "that x / absmax divides every row by its own absmax.")
        if problem and "return_types" in problem.message:  # .max(dim=...) gives (values, indices)
            return Verdict(FAIL, f"{problem.message} — with a dim, .max returns the pair (values, indices): use "
                                 "x.abs().amax(dim=-1, keepdim=True), or .max(dim=-1, keepdim=True).values.")
        if problem:
            return problem
        problem = _absmax_shape_problem(value, x)
        if problem:
            return problem
        codes, absmax = value
        qmax = 2 ** (bits - 1) - 1
        exact = x / x.abs().amax(-1, keepdim=True) * qmax
        ok_scale = torch.allclose(absmax.float(), x.abs().amax(-1, keepdim=True))
        ok_codes = (codes.long() - exact).abs().max().item() <= 0.5 + 1e-4  # round to nearest, ties either way
        if not (ok_scale and ok_codes):
            hint = _absmax_value_hint(codes, absmax.float(), x, bits)
            return Verdict(FAIL, hint or f"with bits={bits} the codes should be round({qmax} · x / absmax(row)).")
    return Verdict(PASS, "correct: one absmax per row, codes = round(qmax · x / absmax) in int8, for 8 and 4 bits.")


def check_absmax_quantize(fn: Callable) -> Callable:
    from ..quant import absmax_quantize

    return report("absmax_quantize", lambda: _absmax_quantize_verdict(fn), fn, absmax_quantize,
                  "lora_scratch.quant.absmax_quantize")


# ---------------------------------------------------------------- pack_nibbles(codes)

_CODES = torch.tensor([1, 2, 15, 0, 7, 9, 12, 3, 0, 15], dtype=torch.uint8)


def _pack_nibbles_verdict(fn: Callable) -> Verdict:
    value, problem = call_with_copies(fn, (_CODES,), ("codes",))
    if problem:
        return problem
    if not isinstance(value, torch.Tensor):
        return Verdict(FAIL, f"return a tensor of bytes, got {describe(value)}{none_hint(value)}.")
    problem = device_problem(value, "cpu", "pack_nibbles(codes)")
    if problem:
        return problem
    if value.numel() != _CODES.numel() // 2:
        return Verdict(FAIL, f"{_CODES.numel()} codes must fit in {_CODES.numel() // 2} bytes (two per byte); "
                             f"you returned {value.numel()} numbers.")
    if value.dtype != torch.uint8:
        return Verdict(FAIL, f"return torch.uint8 (one byte each), got {value.dtype}.")
    hi, lo = _CODES[0::2].long(), _CODES[1::2].long()
    got = value.reshape(-1).long()
    if torch.equal(got, hi * 16 + lo):
        return Verdict(PASS, "correct: two codes per byte, the first in the high 4 bits (0x12 for codes 1, 2).")
    if torch.equal(got, lo * 16 + hi):
        return Verdict(FAIL, "you put the first code of each pair in the low 4 bits; the convention here (as in "
                             "bitsandbytes) is high nibble first: (codes[0::2] << 4) | codes[1::2].")
    half = _CODES.numel() // 2
    if torch.equal(got, _CODES[:half].long() * 16 + _CODES[half:].long()):
        return Verdict(FAIL, "you paired the first half of the codes with the second half; pairs are neighbours: "
                             "codes[0::2] (high 4 bits) with codes[1::2] (low 4 bits).")
    if torch.equal(got, hi + lo):
        return Verdict(FAIL, "you added the two codes without shifting: move the first one up 4 bits (<< 4, × 16).")
    return Verdict(FAIL, "the bytes are wrong: byte i = (codes[2i] << 4) | codes[2i + 1].")


def check_pack_nibbles(fn: Callable) -> Callable:
    from ..quant import pack_nibbles

    return report("pack_nibbles", lambda: _pack_nibbles_verdict(fn), fn, pack_nibbles,
                  "lora_scratch.quant.pack_nibbles")


# ---------------------------------------------------------------- bits_per_param(tensors, n_params)

def _storage_case() -> tuple[dict[str, torch.Tensor], int]:
    tensors = {"packed": torch.zeros(1600, dtype=torch.uint8), "scales": torch.zeros(50, dtype=torch.int8),
               "scales_absmax": torch.zeros(1), "scales_offset": torch.zeros(1)}
    return tensors, 3200


def _bits_per_param_verdict(fn: Callable) -> Verdict:
    tensors, n = _storage_case()
    value, problem = call_with_copies(fn, (tensors, n), ("tensors", "n_params"))
    problem = problem or number_problem(value, "bits_per_param(tensors, 3200)", "bits per parameter, a float")
    if problem:
        return problem
    whole = isinstance(as_number(value), int)  # an int result: integer division somewhere
    value = float(as_number(value))
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    mistakes = [
        (nbytes / n, "that is bytes per parameter; multiply by 8 for bits."),
        (8 * sum(t.numel() for t in tensors.values()) / n, "you counted numbers, not bytes: an fp32 scale takes 4 "
                                                             "bytes (t.numel() * t.element_size())."),
        (8 * 1600 / n, "you counted only the packed codes; the scales are stored too and belong in the sum."),
        (8 * 1650 / n, "you left out the fp32 tensors (second-level scales, offset): add every tensor you keep."),
    ]
    if math.isclose(value, 8 * nbytes / n, rel_tol=1e-6):
        return Verdict(PASS, f"correct: 8 · {nbytes:,} bytes / {n:,} weights = {8 * nbytes / n:.4f} bits per "
                             "parameter.")
    if whole and value == (8 * nbytes) // n:  # an int 4, not the float 4.0 of the packed codes alone
        return Verdict(FAIL, f"you used //, which rounds down to {value:g}; bits per parameter is rarely a whole "
                             "number (4.145 here): divide with /.")
    for wrong, hint in mistakes:
        if math.isclose(value, wrong, rel_tol=1e-6):
            return Verdict(FAIL, hint)
    return Verdict(FAIL, "the value is wrong: 8 · Σ (numel · element_size) over every tensor, / n_params.")


def check_bits_per_param(fn: Callable) -> Callable:
    from ..quant import bits_per_param

    return report("bits_per_param", lambda: _bits_per_param_verdict(fn), fn, bits_per_param,
                  "lora_scratch.quant.bits_per_param")
