"""Checkers of 13_from_scratch_to_peft: each typical way to get the c_attn split wrong gets its hint."""
from checklib import generic_tests

from lora_scratch import checks
from lora_scratch.interop import c_attn_to_qkv


def untransposed(weight, bias):
    C = weight.shape[0]
    return [(weight[:, i * C:(i + 1) * C], bias[i * C:(i + 1) * C]) for i in range(3)]


def rows_not_columns(weight, bias):  # splits the (C, 3C) weight along dim 0
    return [(w, b) for w, b in zip(weight.split(weight.shape[0] // 3 or 1, dim=0)[:3], bias.split(weight.shape[0]))]


def bias_whole(weight, bias):
    C = weight.shape[0]
    return [(weight[:, i * C:(i + 1) * C].T, bias) for i in range(3)]


def k_q_v(weight, bias):
    q, k, v = c_attn_to_qkv(weight, bias)
    return [k, q, v]


def hard_coded(weight, bias):  # right for C = 4 only
    return [(weight[:, i * 4:(i + 1) * 4].T, bias[i * 4:(i + 1) * 4]) for i in range(3)]


def in_place(weight, bias):
    out = c_attn_to_qkv(weight.clone(), bias.clone())
    weight.zero_()
    return out


CASES = {
    checks.check_c_attn_to_qkv: {
        "reference": c_attn_to_qkv,
        "mistakes": [
            (untransposed, "not transposed"),
            (rows_not_columns, "column blocks"),
            (bias_whole, "split it like the weight"),
            (k_q_v, "q, then k, then v"),
            (hard_coded, "should be (6, 6)"),
            (in_place, "changed c_attn's weight or bias in place"),
            (lambda weight, bias: {"q": 1}, "three pairs"),
        ],
    },
}

test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)
