"""Checkers of 04_memory_breakdown."""
from checklib import generic_tests, run

from lora_scratch import checks
from lora_scratch.memory import adam_state_bytes, lora_memory_saving, training_bytes_per_param

MASTER = {"fp32": 0, "bf16": 0, "mixed": 4}
WEIGHT = {"fp32": 4, "bf16": 2, "mixed": 2}
STATE = {"fp32": 4, "bf16": 2, "mixed": 4}
N_STATES = {"adam": 2, "sgd_momentum": 1, "sgd": 0}


def no_master(precision, optimizer):
    return 2 * WEIGHT[precision] + N_STATES[optimizer] * STATE[precision]


def no_gradient(precision, optimizer):
    return WEIGHT[precision] + MASTER[precision] + N_STATES[optimizer] * STATE[precision]


def one_adam_state(precision, optimizer):
    return 2 * WEIGHT[precision] + MASTER[precision] + min(N_STATES[optimizer], 1) * STATE[precision]


def mixed_states_in_16_bit(precision, optimizer):
    state = 2 if precision == "mixed" else STATE[precision]
    return 2 * WEIGHT[precision] + MASTER[precision] + N_STATES[optimizer] * state


CASES = {
    checks.check_adam_state_bytes: {
        "reference": adam_state_bytes,
        "mistakes": [
            (lambda n, b: n * b, "one state per parameter"),
            (lambda n, b: 2 * n, "not bytes"),
            (lambda n, b: 4 * n * b, "weight + gradient + m + v"),
            (lambda n, b: 2 * n * b + 4, "step counter"),
            (lambda n, b: 16 * n * b, "8 bits"),
            (lambda n, b: [n, b], "returned a list"),
            (lambda n: n, "raised TypeError"),
        ],
    },
    checks.check_training_bytes_per_param: {
        "reference": training_bytes_per_param,
        "mistakes": [
            (no_master, "forgot the fp32 master copy"),
            (no_gradient, "left out the gradient"),
            (one_adam_state, "two states per parameter"),
            (mixed_states_in_16_bit, "m and v are fp32"),
            (lambda p, o: 16, "wrong for"),
            (lambda p, o: {"fp32": 4}[p], "raised KeyError"),
        ],
    },
    checks.check_lora_memory_saving: {
        "reference": lora_memory_saving,
        "mistakes": [
            (lambda p, n, a: 1 - (4 * p + 16 * n) / (16 * p), "left the activations out"),
            (lambda p, n, a: 1 - (4 * p + 16 * n + a * n / p) / (16 * p + a), "shrank the activations"),
            (lambda p, n, a: 1 - (16 * n + a) / (16 * p + a), "frozen weights still sit in memory"),
            (lambda p, n, a: (4 * p + 16 * n + a) / (16 * p + a), "share LoRA *keeps*"),
            (lambda p, n, a: 100 * lora_memory_saving(p, n, a), "not a percentage"),
            (lambda p, n, a: 1 - n / p, "should be"),
        ],
    },
}


# the three tests every checker gets: reference ✅, stub ⏳, each typical mistake ❌ with its hint
test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)


def test_the_master_copy_hint_is_the_one_from_the_brief(capsys):
    """Forgetting the master copy gives 12 instead of 16 for mixed-precision Adam: the hint says so."""
    assert no_master("mixed", "adam") == 12 and training_bytes_per_param("mixed", "adam") == 16
    _, out = run(capsys, checks.check_training_bytes_per_param, no_master)
    assert "came out at 12" in out


def test_checker_output_is_deterministic(capsys):
    outputs = [run(capsys, checks.check_lora_memory_saving, lambda p, n, a: 0.5)[1] for _ in range(2)]
    assert outputs[0] == outputs[1]


def test_frozen_count_minus_the_adapter_is_named_without_the_formula(capsys):
    """The newcomer's mistake: counting the frozen weights as n_params - n_lora."""
    from checklib import run

    _, out = run(capsys, checks.check_lora_memory_saving, lambda p, n, a: 1 - (4 * (p - n) + 16 * n + a) / (16 * p + a))
    assert out.startswith(checks.FAIL) and "base model alone" in out and "16·P" not in out, out
