"""Checkers of 01_rank_and_svd."""
import numpy as np
import pytest
import torch
from checklib import assert_reference_passes, generic_tests, run

from lora_scratch import checks
from lora_scratch.linalg import energy_share, low_rank_approx, relative_error


def _svd(M):
    return torch.linalg.svd(M, full_matrices=False)


def _solution_full_matrices(M, r):
    """full_matrices=True is not a mistake: the slices drop the extra columns."""
    U, S, Vh = torch.linalg.svd(M)
    return U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]


def _no_singular_values(M, r):
    U, S, Vh = _svd(M)
    return U[:, :r] @ Vh[:r]


def _smallest(M, r):
    U, S, Vh = _svd(M)
    return U[:, -r:] @ torch.diag(S[-r:]) @ Vh[-r:]


def _one_too_many(M, r):
    U, S, Vh = _svd(M)
    return U[:, :r + 1] @ torch.diag(S[:r + 1]) @ Vh[:r + 1]


def _no_vh(M, r):
    U, S, Vh = _svd(M)
    return U[:, :r] @ torch.diag(S[:r])


def _float64(M, r):
    return low_rank_approx(M.double(), r)


CASES = {
    checks.check_factored_params: {
        "reference": lambda d, k, r: (d + k) * r,
        "mistakes": [
            (lambda d, k, r: d * k, "size of the full matrix"),
            (lambda d, k, r: d * k * r, "d·k·r"),
            (lambda d, k, r: d + k, "multiply by r"),
            (lambda d, k, r: 2 * d * r, "square matrix"),
            (lambda d, k, r: d * r, "only B"),
            (lambda d, k, r: (d + k) * r + 0.5, "whole number"),
            (lambda d, k, r: d * k / 0, "raised ZeroDivisionError"),
        ],
    },
    checks.check_low_rank_approx: {
        "reference": low_rank_approx,
        "mistakes": [
            (_no_singular_values, "dropped the singular values"),
            (_smallest, "*smallest*"),
            (_one_too_many, "r + 1 directions"),
            (_no_vh, "must have M's shape"),
            (_float64, "same dtype"),
            (lambda M, r: low_rank_approx(M, r).numpy(), "return a torch.Tensor"),
            (lambda M, r: M, "away from the truncated SVD"),
        ],
    },
    checks.check_relative_error: {
        "reference": relative_error,
        "mistakes": [
            (lambda M, Mh: torch.linalg.norm(M - Mh), "without dividing"),
            (lambda M, Mh: (torch.linalg.norm(M - Mh) / torch.linalg.norm(M)) ** 2, "squared norms"),
            (lambda M, Mh: torch.linalg.norm(M - Mh) / torch.linalg.norm(Mh), "divided by ||M̂||_F"),
            (lambda M, Mh: (M - Mh).abs().mean(), "mean absolute error"),
            (lambda M, Mh: 1 - relative_error(M, Mh), "1 − error"),
            (lambda M, Mh: M - Mh, "return one number"),
        ],
    },
    checks.check_energy_share: {
        "reference": energy_share,
        "mistakes": [
            (lambda S, r: S[:r].sum() / S.sum(), "*square*"),
            (lambda S, r: (S[:r + 1] ** 2).sum() / (S ** 2).sum(), "off by one"),
            (lambda S, r: (S[-r:] ** 2).sum() / (S ** 2).sum(), "smallest"),
            (lambda S, r: 1 - (S[:r] ** 2).sum() / (S ** 2).sum(), "tail"),
            (lambda S, r: 100 * (S[:r] ** 2).sum() / (S ** 2).sum(), "percentage"),
            (lambda S, r: np.float32(0.5), "S = [4, 3, 2, 1]"),
            (lambda S, r: [0.5], "return one number"),
        ],
    },
}


# the three tests every checker gets: reference ✅, stub ⏳, each typical mistake ❌ with its hint
test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)


def test_full_matrices_true_is_not_a_mistake(capsys):
    assert_reference_passes(capsys, checks.check_low_rank_approx, _solution_full_matrices)


def test_plain_float_and_tensor_answers_both_pass(capsys):
    as_float = lambda S, r: float((S[:r] ** 2).sum() / (S ** 2).sum())  # noqa: E731
    assert_reference_passes(capsys, checks.check_energy_share, as_float)
    as_tensor = lambda M, Mh: torch.linalg.norm(M - Mh) / torch.linalg.norm(M)  # noqa: E731
    returned, out = run(capsys, checks.check_relative_error, as_tensor)
    assert out.startswith(checks.PASS) and "goes on with your function" in out and "Python number" in out
    # the notebook rounds the result later: a tensor would fail there, so the checker hands back plain floats
    value = returned(torch.eye(2), torch.zeros(2, 2))
    assert type(value) is float and value == 1.0


@pytest.mark.parametrize("checker, fn, args", [
    (checks.check_energy_share, lambda S, r: (S[:r] ** 2).sum() / (S ** 2).sum(), (torch.tensor([3.0, 4.0]), 1)),
    (checks.check_factored_params, lambda d, k, r: torch.tensor((d + k) * r), (10, 20, 2)),
])
def test_tensor_results_become_python_numbers(capsys, checker, fn, args):
    returned, out = run(capsys, checker, fn)
    assert out.startswith(checks.PASS), out
    assert not isinstance(returned(*args), torch.Tensor)
    assert round(returned(*args), 3) == round(float(fn(*args)), 3)  # what the notebook does with it


@pytest.mark.parametrize("checker, mistake", [
    (checks.check_low_rank_approx, _no_singular_values),
    (checks.check_energy_share, lambda S, r: S[:r].sum() / S.sum()),
])
def test_checker_output_is_deterministic(capsys, checker, mistake):
    outputs = [run(capsys, checker, mistake)[1] for _ in range(2)]
    assert outputs[0] == outputs[1]


def _transposed_vh(M, r):
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    return U[:, :r] @ torch.diag(S[:r]) @ Vh[:, :r].T  # columns of Vh, as if it were V


def _transposed_rows(M, r):
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    return U[:, :r] @ torch.diag(S[:r]) @ Vh[:r].T  # (12, r) @ (r, r) @ (8, r): does not multiply


@pytest.mark.parametrize("mistake, hint", [(_transposed_vh, "its *rows* are the right singular vectors"),
                                           (_transposed_rows, "which way round")])
def test_a_transposed_vh_is_named_not_solved(capsys, mistake, hint):
    """Issue 16: the hint names the transposition and does not print the solution."""
    _, out = run(capsys, checks.check_low_rank_approx, mistake)
    assert out.startswith(checks.FAIL) and hint in out, out
    assert "Vh[:r]" not in out and "torch.diag(S[:r])" not in out, out


@pytest.mark.parametrize("mistake", [_no_singular_values, _smallest, _one_too_many, _no_vh, lambda M, r: M * 2])
def test_no_low_rank_hint_hands_over_the_answer(capsys, mistake):
    _, out = run(capsys, checks.check_low_rank_approx, mistake)
    assert out.startswith(checks.FAIL) and "torch.diag(S[:r])" not in out and "@ Vh[:r]" not in out, out
