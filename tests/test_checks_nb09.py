"""Checkers of 09_qlora_nf4_from_scratch."""
import math

import torch
from checklib import generic_tests, run

from lora_scratch import checks
from lora_scratch.quant import absmax_quantize, bits_per_param, normal_quantile, pack_nibbles


def quantize(absmax_of, scale=lambda bits: 2 ** (bits - 1) - 1, rounding=torch.round, dtype=torch.int8,
             return_scale=False):
    def fn(x, bits):
        absmax = absmax_of(x)
        codes = rounding(x / absmax * scale(bits)).to(dtype)
        return codes, (absmax / (2 ** (bits - 1) - 1) if return_scale else absmax)
    return fn


per_row = lambda x: x.abs().amax(-1, keepdim=True)  # noqa: E731


def bytes_of(tensors, kinds=None):
    return sum(t.numel() * t.element_size() for k, t in tensors.items() if kinds is None or k in kinds)


CASES = {
    checks.check_normal_quantile: {
        "reference": normal_quantile,
        "mistakes": [
            (lambda p: torch.erfinv(2 * p - 1), "forgot the factor √2"),
            (lambda p: math.sqrt(2) * torch.erfinv(p), "erfinv takes 2p − 1"),
            (lambda p: -normal_quantile(p), "sign is flipped"),
            (lambda p: 0.5 * (1 + torch.erf(p / math.sqrt(2))), "the CDF"),
            (lambda p: normal_quantile(p)[:3], "return a tensor of p's shape"),
            (lambda p: normal_quantile(p) + 0.1, "the values are wrong"),
            (lambda p: math.sqrt(2) * torch.erfinv(2 * p - 1), "compute in float64"),  # no cast: float32 stays
        ],
    },
    checks.check_absmax_quantize: {
        "reference": absmax_quantize,
        "mistakes": [
            (quantize(lambda x: x.abs().max()), "one absmax for the whole tensor"),
            (quantize(lambda x: x.amax(-1, keepdim=True)), "max(x), not max(|x|)"),
            (quantize(per_row, return_scale=True), "not absmax / qmax"),
            (quantize(per_row, rounding=lambda t: t), "truncated instead of rounding"),
            (quantize(per_row, scale=lambda bits: 2 ** bits - 1), "symmetric range"),
            (quantize(per_row, scale=lambda bits: 2 ** (bits - 1)), "symmetric range"),
            (quantize(per_row, dtype=torch.float32), "torch.int8"),
            (quantize(per_row, scale=lambda bits: 127), "still scaled to 127"),
            (quantize(lambda x: x.abs().max(dim=-1, keepdim=True)), "(values, indices)"),
            (quantize(lambda x: x.abs().amax(-1)), "keepdim=True"),
            (lambda x, bits: (absmax_quantize(x, bits)[0], per_row(x).T), "shape (3, 1)"),
            (lambda x, bits: absmax_quantize(x, bits)[0], "return the pair"),
            (lambda x, bits: (absmax_quantize(x, bits)[0].T, per_row(x)), "x's shape"),
        ],
    },
    checks.check_pack_nibbles: {
        "reference": pack_nibbles,
        "mistakes": [
            (lambda c: (c[1::2] << 4) | c[0::2], "low 4 bits"),
            (lambda c: c[0::2] + c[1::2], "without shifting"),
            (lambda c: c, "two per byte"),
            (lambda c: (c[0::2].long() << 4) | c[1::2].long(), "torch.uint8"),
            (lambda c: (c[0::2] << 3) | c[1::2], "the bytes are wrong"),
            (lambda c: c.tolist(), "return a tensor"),
            (lambda c: (c[:len(c) // 2] << 4) | c[len(c) // 2:], "first half of the codes with the second half"),
        ],
    },
    checks.check_bits_per_param: {
        "reference": bits_per_param,
        "mistakes": [
            (lambda t, n: bytes_of(t) / n, "multiply by 8"),
            (lambda t, n: 8 * sum(x.numel() for x in t.values()) / n, "counted numbers, not bytes"),
            (lambda t, n: 8 * bytes_of(t, {"packed"}) / n, "only the packed codes"),
            (lambda t, n: 8 * bytes_of(t, {"packed", "scales"}) / n, "left out the fp32 tensors"),
            (lambda t, n: 8 * bytes_of(t) / n + 1, "the value is wrong"),
            (lambda t, n: [4.5], "return one number"),
            (lambda t, n: 8 * bytes_of(t) // n, "you used //"),
        ],
    },
}

# the three tests every checker gets: reference ✅, stub ⏳, each typical mistake ❌ with its hint
test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)


def test_bits_per_param_accepts_a_tensor_result(capsys):
    fn = lambda t, n: torch.tensor(bits_per_param(t, n))  # noqa: E731
    assert run(capsys, checks.check_bits_per_param, fn)[1].startswith(checks.PASS)


def test_checker_output_is_deterministic(capsys):
    for checker, fn in [(checks.check_absmax_quantize, absmax_quantize), (checks.check_pack_nibbles, lambda c: c)]:
        outputs = [run(capsys, checker, fn)[1] for _ in range(2)]
        assert outputs[0] == outputs[1]
