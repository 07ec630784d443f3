"""Checkers of 03_parameter_count: the reference passes, the stub gives ⏳, each typical mistake its hint."""
import pytest
from checklib import generic_tests, run

from lora_scratch import checks
from lora_scratch.checks import nb03
from lora_scratch.counting import gpt_params, linear_params, lora_budget, lora_params


def _budget_per_block(cfg, targets, r):
    return lora_budget(cfg, targets, r) // cfg.n_layer


def _full_matrices(cfg, targets):
    return cfg.n_layer * sum(4 * cfg.n_embd ** 2 if t in ("up_proj", "down_proj") else cfg.n_embd ** 2 for t in targets)


def _budget_square(cfg, targets, r):
    return cfg.n_layer * len(targets) * 2 * cfg.n_embd * r


CASES = {
    checks.check_linear_params: {
        "reference": linear_params,
        "mistakes": [
            (lambda i, o, bias=True: i * o, "you forgot the bias"),
            (lambda i, o, bias=True: i * o + (i if bias else 0), "not per input (d_in)"),
            (lambda i, o, bias=True: i * o + o, "even when bias=False"),
            (lambda i, o, bias=True: i + o + (o if bias else 0), "multiply d_in by d_out"),
            (lambda i, o, bias=True: float(i * o) + 0.5, "whole number"),
            (lambda i, o, bias=True: [i, o], "whole number"),
            (lambda i, o, bias=True: i * o + 1, "the count is 589,824; your function returned 589,825"),
        ],
    },
    checks.check_lora_params: {
        "reference": lora_params,
        "mistakes": [
            (lambda i, o, r: 2 * i * r, "only for a square matrix"),
            (lambda i, o, r: 2 * o * r, "only for a square matrix"),
            (lambda i, o, r: i * o * r, "their sizes add"),
            (lambda i, o, r: i * o, "the full matrix W"),
            (lambda i, o, r: i * r, "counted only A"),
            (lambda i, o, r: o * r, "counted only B"),
            (lambda i, o, r: 1 / 0, "raised ZeroDivisionError"),
        ],
    },
    checks.check_gpt_params: {
        "reference": gpt_params,
        "mistakes": [
            (lambda c: gpt_params(c, tied=False), "163,037,184"),
            (lambda c: gpt_params(c) - c.block_size * c.n_embd, "position embedding"),
            (lambda c: gpt_params(c) - (2 * c.n_layer + 1) * c.n_embd, "a scale and a bias"),
            (lambda c: gpt_params(c) - (2 * c.n_layer + 1) * 2 * c.n_embd, "you forgot the LayerNorms"),
            (lambda c: gpt_params(c) - 2 * c.n_embd, "final LayerNorm ln_f"),
            (lambda c: gpt_params(c) - c.n_layer * 9 * c.n_embd, "biases of the six Linear"),
            (lambda c: gpt_params(c) - c.n_layer * 6 * c.n_embd ** 2 - c.n_layer * 3 * c.n_embd, "widens to 4·d"),
            (lambda c: gpt_params(c) - c.n_layer * (c.n_embd ** 2 + c.n_embd), "o_proj"),
            (lambda c: c.n_layer, "the count is 124,439,808"),
        ],
    },
    checks.check_lora_budget: {
        "reference": lora_budget,
        "mistakes": [
            (_budget_per_block, "one block only"),
            (_budget_square, "are not square"),
            (lambda c, t, r: _full_matrices(c, t) * r, "not d_in·d_out·r"),
            (lambda c, t, r: _full_matrices(c, t), "the full matrices"),
            (lambda c, t, r: str(lora_budget(c, t, r)), "whole number"),
        ],
    },
}


# the three tests every checker gets: reference ✅, stub ⏳, each typical mistake ❌ with its hint
test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)


def test_the_unmodified_gpt_variant_is_the_reference():
    for (cfg,) in nb03.GPT_CASES:
        assert nb03._gpt_variant(cfg) == gpt_params(cfg)


@pytest.mark.parametrize("cases_, reference, mistakes", [
    (nb03.LINEAR_CASES, linear_params, nb03.LINEAR_MISTAKES),
    (nb03.LORA_CASES, lora_params, nb03.LORA_MISTAKES),
    (nb03.GPT_CASES, gpt_params, nb03.GPT_MISTAKES),
    (nb03.BUDGET_CASES, lora_budget, nb03.BUDGET_MISTAKES),
])
def test_every_mistake_is_told_apart_from_the_answer(cases_, reference, mistakes):
    expected = [reference(*a) for a in cases_]
    for mistake, hint in mistakes:
        assert [mistake(*a) for a in cases_] != expected, hint


def test_numpy_and_torch_integers_are_accepted(capsys):
    import numpy as np
    import torch

    _, out = run(capsys, checks.check_lora_params, lambda i, o, r: np.int64(lora_params(i, o, r)))
    assert out.startswith(checks.PASS)
    _, out = run(capsys, checks.check_lora_params, lambda i, o, r: torch.tensor(lora_params(i, o, r)))
    assert out.startswith(checks.PASS)


def test_checker_output_is_deterministic(capsys):
    outputs = [run(capsys, checks.check_gpt_params, lambda c: gpt_params(c, tied=False))[1] for _ in range(2)]
    assert outputs[0] == outputs[1]


def test_a_learner_editing_its_inputs_cannot_poison_later_checks(capsys):
    """The cases serve every check of the session: a learner's cfg.n_layer += 1 or targets.append(...) must not
    change them (the checker hands over copies)."""
    def edits_inputs(cfg, targets, r):
        cfg.n_layer += 1
        targets.append("up_proj")
        return 0

    run(capsys, checks.check_lora_budget, edits_inputs)
    assert run(capsys, checks.check_lora_budget, lora_budget)[1].startswith(checks.PASS)
    assert nb03.BUDGET_CASES[0][0].n_layer == 12 and nb03.BUDGET_CASES[0][1] == ["q_proj", "v_proj"]
