"""Checkers of 00_start_here."""
import math

from checklib import generic_tests, run

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


# the three tests every checker gets: reference ✅, stub ⏳, each typical mistake ❌ with its hint
test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)


def test_checker_output_is_deterministic(capsys):
    outputs = [run(capsys, checks.check_perplexity, lambda x: 2 ** x)[1] for _ in range(2)]
    assert outputs[0] == outputs[1]


def test_checking_the_fallback_again_is_not_a_false_pass(capsys):
    """Run the check cell twice without re-running the exercise: the name holds the reference by then."""
    from checklib import stub

    fallback = checks.check_perplexity(stub)  # ⏳: the notebook goes on with the (marked) reference
    capsys.readouterr()
    again, out = run(capsys, checks.check_perplexity, fallback)
    assert out.startswith(checks.TODO) and "Run your exercise cell again" in out, out
    assert again(1.0) == fallback(1.0)  # still the reference, still usable
