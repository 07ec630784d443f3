"""Checkers of 06_tiny_gpt: the reference passes, the stub gives ⏳, each typical mistake its hint."""
import math

import torch
import torch.nn.functional as F
from checklib import generic_tests, run

from lora_scratch import checks
from lora_scratch.checks import nb06
from lora_scratch.data import encode


def _explicit_attention(q, k, v):
    """The from-scratch solution of the notebook: must pass like the torch reference."""
    T = q.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return F.softmax(scores, dim=-1) @ v


def _attention_weights_only(q, k, v):
    T = q.size(-2)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(~torch.ones(T, T).tril().bool(), -1e9)
    return F.softmax(scores, dim=-1)


def _mask_without_diagonal(q, k, v):
    T = q.size(-2)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)))
    return F.softmax(scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(-1), float("-inf")), -1) @ v


def _attention_with_k_T(q, k, v):  # k.T on a 4-D tensor reverses all four dims: a shape error
    T = q.size(-2)
    scores = (q @ k.permute(3, 2, 1, 0) / math.sqrt(q.size(-1)))
    return F.softmax(scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")), -1) @ v


def _attention_with_the_notebooks_T(q, k, v):  # the global T = 8 of the notebook, not q's T = 5
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    return F.softmax(scores.masked_fill(~torch.ones(8, 8, dtype=torch.bool).tril(), float("-inf")), -1) @ v


def _attention_scaling_q_in_place(q, k, v):
    q /= math.sqrt(q.size(-1))
    return _explicit_attention(q * math.sqrt(q.size(-1)), k, v)


def _temperature_in_place(logits, t):
    logits /= t
    return F.softmax(logits, dim=-1)


def _encode_without_dtype(s):  # fine for text, but torch.tensor([]) is float32
    return torch.tensor(list(s.encode("utf-8")))


def _encode_from_buffer(s):  # torch.frombuffer refuses the empty text
    return torch.frombuffer(bytearray(s.encode("utf-8")), dtype=torch.uint8).long()


CASES = {
    checks.check_encode: {
        "reference": encode,
        "mistakes": [
            (lambda s: torch.tensor([ord(c) for c in s], dtype=torch.long), "one id per character"),
            (lambda s: torch.tensor(list(s.encode("latin-1")), dtype=torch.long), "one id per character"),
            (lambda s: torch.tensor(list(s.encode("ascii")), dtype=torch.long), "Only UTF-8"),
            (lambda s: list(s.encode("utf-8")), "returned a list"),
            (lambda s: torch.tensor(list(s.encode("utf-8")), dtype=torch.uint8), "int64"),
            (lambda s: encode(s).unsqueeze(0), "should have shape"),
            (lambda s: encode(s)[1:], "should have shape"),
            (lambda s: encode(s.lower()), "should be"),
            (_encode_without_dtype, "torch.tensor([]) has no number"),
            (lambda s: torch.tensor(s.encode("utf-8")), "cannot read a bytes object"),
            (_encode_from_buffer, "the empty text"),
        ],
    },
    checks.check_causal_mask: {
        "reference": nb06.causal_mask_reference,
        "mistakes": [
            (lambda T: torch.ones(T, T, dtype=torch.bool).triu(), "upper triangle"),
            (lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1), "left out the diagonal"),
            (lambda T: torch.ones(T, T, dtype=torch.bool).triu(1), "positions to block"),
            (lambda T: torch.ones(T, T, dtype=torch.bool).tril(1), "off by one"),
            (lambda T: torch.ones(T, T).tril(), "bool tensor"),
            (lambda T: torch.ones(T, T, dtype=torch.bool), "exactly when s ≤ t"),
            (lambda T: torch.ones(T, dtype=torch.bool), "should have shape"),
            (lambda T: [[s <= t for s in range(T)] for t in range(T)], "return a torch.Tensor"),
        ],
    },
    checks.check_causal_attention: {
        "reference": nb06.attention_reference,
        "mistakes": [
            (lambda q, k, v: nb06._attention_variant(q, k, v, scale="none"), "forgot the scaling"),
            (lambda q, k, v: nb06._attention_variant(q, k, v, scale="d"), "divided by hs"),
            (lambda q, k, v: nb06._attention_variant(q, k, v, dim=-2), "over the queries"),
            (lambda q, k, v: nb06._attention_variant(q, k, v, mask="none"), "left out the causal mask"),
            (lambda q, k, v: nb06._attention_variant(q, k, v, mask="upper"), "upper triangle"),
            (lambda q, k, v: nb06._attention_variant(q, k, v, after=True), "masked after the softmax"),
            (lambda q, k, v: nb06._attention_variant(q, k, v, mask="inverted"), "masked_fill(mask, …)"),
            (lambda q, k, v: nb06._attention_variant(q, k, v, fill=0.0), "filled the future scores with 0"),
            (lambda q, k, v: nb06._attention_variant(q, k, v, scale="notebook_hs"), "the notebook's global hs"),
            (_attention_with_k_T, "k.transpose(-2, -1)"),
            (_attention_with_the_notebooks_T, "take T and hs from q"),
            (_attention_scaling_q_in_place, "changed q in place"),
            (_attention_weights_only, "attention weights"),
            (_mask_without_diagonal, "NaN"),
            (lambda q, k, v: q @ k @ v, "raised RuntimeError"),
            (lambda q, k, v: v, "differs from"),
        ],
    },
    checks.check_temperature_softmax: {
        "reference": nb06.temperature_reference,
        "mistakes": [
            (lambda x, t: F.softmax(x * t, dim=-1), "multiplied the logits"),
            (lambda x, t: F.softmax(x, dim=-1), "no effect"),
            (lambda x, t: F.softmax(x / t, dim=0), "over the batch"),
            (lambda x, t: x / t, "do not sum to 1"),
            (lambda x, t: torch.exp(x / t), "do not sum to 1"),
            (lambda x, t: F.softmax(x, dim=-1) / t, "divided the probabilities"),
            (lambda x, t: F.log_softmax(x / t, dim=-1), "log-probabilities"),
            (_temperature_in_place, "changed the logits in place"),
            (lambda x, t: F.softmax(x / t, dim=-1)[0], "should have shape"),
        ],
    },
}


# the three tests every checker gets: reference ✅, stub ⏳, each typical mistake ❌ with its hint
test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)


def test_the_from_scratch_solutions_pass(capsys):
    _, out = run(capsys, checks.check_causal_attention, _explicit_attention)
    assert out.startswith(checks.PASS), out
    p_softmax_power = lambda x, t: F.softmax(x, -1) ** (1 / t) / (F.softmax(x, -1) ** (1 / t)).sum(-1, keepdim=True)  # noqa: E731
    _, out = run(capsys, checks.check_temperature_softmax, p_softmax_power)
    assert out.startswith(checks.PASS), out


def test_checkers_leave_the_inputs_alone_and_print_the_same_each_time(capsys):
    outputs = [run(capsys, checks.check_causal_attention, lambda q, k, v: q.mul_(2))[1] for _ in range(2)]
    assert outputs[0] == outputs[1]


def test_the_mask_reference_is_what_sdpa_uses():
    q, k, v = nb06._attention_inputs()
    explicit = F.scaled_dot_product_attention(q, k, v, attn_mask=nb06.causal_mask_reference(q.size(-2)))
    assert torch.allclose(explicit, nb06.attention_reference(q, k, v), atol=1e-6)
