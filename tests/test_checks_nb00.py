"""Checkers of 00_start_here."""
import math

import pytest
from checklib import assert_mistake_hint, assert_reference_passes, assert_stub_is_todo, cases, run

from lora_scratch import checks
from lora_scratch.counting import count_params
from lora_scratch.train import perplexity

CASES = {
    checks.check_perplexity: {
        "reference": perplexity,
        "mistakes": [
            (lambda loss: 2 ** loss, "2 ** loss"),
            (lambda loss: 10 ** loss, "10 ** loss"),
            (lambda loss: loss, "the loss itself"),
            (lambda loss: math.exp(-loss), "average probability"),
            (lambda loss: str(math.exp(loss)), "returned a str"),
            (lambda loss: 1 / 0, "raised ZeroDivisionError"),
        ],
    },
    checks.check_count_trainable: {
        "reference": lambda m: count_params(m, trainable_only=True),
        "mistakes": [
            (lambda m: sum(p.numel() for p in m.parameters()), "frozen ones too"),
            (lambda m: len([p for p in m.parameters() if p.requires_grad]), "p.numel()"),
            (lambda m: sum(p.numel() for p in m.parameters() if not p.requires_grad), "instead of the trainable"),
            (lambda m: 22.5, "whole number"),
            (lambda m: m.weight, "raised AttributeError"),
        ],
    },
}


@pytest.mark.parametrize("checker", CASES, ids=lambda c: c.__name__)
def test_reference_passes(capsys, checker):
    assert_reference_passes(capsys, checker, CASES[checker]["reference"])


@pytest.mark.parametrize("checker", CASES, ids=lambda c: c.__name__)
def test_stub_is_not_done_yet(capsys, checker):
    assert_stub_is_todo(capsys, checker)


@pytest.mark.parametrize("checker, mistake, hint", cases(CASES))
def test_typical_mistake_gets_its_hint(capsys, checker, mistake, hint):
    assert_mistake_hint(capsys, checker, mistake, hint)


def test_checker_output_is_deterministic(capsys):
    outputs = [run(capsys, checks.check_perplexity, lambda x: 2 ** x)[1] for _ in range(2)]
    assert outputs[0] == outputs[1]
