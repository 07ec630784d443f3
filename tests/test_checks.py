"""Every checker: the reference passes, the stub gives ⏳, typical mistakes get their hint, nothing raises."""
import math

import pytest

from lora_scratch import checks
from lora_scratch.counting import count_params
from lora_scratch.train import perplexity


def stub(*_):
    raise NotImplementedError("Exercise: write your code here")


def run(capsys, checker, fn):
    returned = checker(fn)
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return returned, out.out


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
def test_reference_passes_and_is_used(capsys, checker):
    reference = CASES[checker]["reference"]
    returned, out = run(capsys, checker, reference)
    assert out.startswith(checks.PASS) and returned is reference and "goes on with your function" in out


@pytest.mark.parametrize("checker", CASES, ids=lambda c: c.__name__)
def test_stub_is_not_done_yet_and_falls_back(capsys, checker):
    returned, out = run(capsys, checker, stub)
    assert out.startswith(checks.TODO) and returned is not stub and "reference" in out


@pytest.mark.parametrize("checker, mistake, hint",
                         [(c, m, h) for c, spec in CASES.items() for m, h in spec["mistakes"]],
                         ids=lambda x: getattr(x, "__name__", str(x))[:30])
def test_typical_mistake_gets_its_hint(capsys, checker, mistake, hint):
    returned, out = run(capsys, checker, mistake)
    assert out.startswith(checks.FAIL) and hint in out and returned is not mistake


def test_checker_output_is_deterministic(capsys):
    outputs = [run(capsys, checks.check_perplexity, lambda x: 2 ** x)[1] for _ in range(2)]
    assert outputs[0] == outputs[1]
