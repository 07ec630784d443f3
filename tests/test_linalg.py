"""lora_scratch.linalg: truncated SVD (Eckart–Young), energy shares, numerical rank, subspace similarity."""
import math

import pytest
import torch

from lora_scratch.linalg import (
    energy_curve,
    energy_share,
    low_rank_approx,
    random_energy_baseline,
    rank,
    relative_error,
    singular_values,
    subspace_similarity,
    tail_error,
)


def _gaussian(*shape: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _rank_k(d_out: int, d_in: int, k: int, seed: int = 0) -> torch.Tensor:
    return _gaussian(d_out, k, seed=seed) @ _gaussian(k, d_in, seed=seed + 1)


@pytest.mark.parametrize("r", [1, 3, 10, 20])
def test_eckart_young_error_is_the_tail_singular_values(r):
    M = _gaussian(30, 20)
    S = singular_values(M)
    err = torch.linalg.norm(M - low_rank_approx(M, r))
    assert math.isclose(float(err), math.sqrt(float(S[r:].pow(2).sum())), rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(float(err), tail_error(M, r), rel_tol=1e-9, abs_tol=1e-9)


def test_no_random_rank_r_matrix_beats_the_truncated_svd():
    M, r = _gaussian(30, 20), 4
    best = float(torch.linalg.norm(M - low_rank_approx(M, r)))
    for seed in range(50):
        candidate = _rank_k(30, 20, r, seed=10 + 2 * seed)
        # even the best rescaling of a random rank-r matrix stays worse
        scale = float((candidate * M).sum() / (candidate * candidate).sum())
        assert float(torch.linalg.norm(M - scale * candidate)) > best


def test_truncating_a_rank_r_matrix_loses_nothing_and_has_rank_r():
    M = _rank_k(25, 15, 3)
    assert rank(M) == 3
    assert rank(low_rank_approx(_gaussian(25, 15), 3)) == 3
    assert relative_error(M, low_rank_approx(M, 3)) < 1e-12
    assert relative_error(M, low_rank_approx(M, 2)) > 0.01


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_low_rank_approx_keeps_shape_and_dtype(dtype):
    M = _gaussian(12, 7, dtype=torch.float32).to(dtype)
    out = low_rank_approx(M, 2)
    assert out.shape == M.shape and out.dtype == dtype


def test_low_rank_approx_at_full_rank_returns_the_matrix():
    M = _gaussian(6, 9)
    assert torch.allclose(low_rank_approx(M, 6), M, atol=1e-12)


def test_singular_values_are_descending_float64():
    S = singular_values(_gaussian(10, 4, dtype=torch.float32))
    assert S.dtype == torch.float64 and S.shape == (4,)
    assert torch.all(S[:-1] >= S[1:])


def test_energy_share_of_exact_rank_k_matrix_is_one_at_k():
    M = _rank_k(40, 30, 5)
    assert energy_share(M, 5) == pytest.approx(1.0, abs=1e-12)
    assert energy_share(M, 4) < 1.0


def test_energy_share_squares_the_singular_values():
    S = torch.tensor([3.0, 4.0])
    assert energy_share(S, 1) == pytest.approx(16 / 25)  # sorted descending, squared: 16 / (16 + 9)
    assert energy_share(torch.diag(S), 1) == pytest.approx(16 / 25)


def test_energy_curve_is_cumulative_and_ends_at_one():
    curve = energy_curve(_gaussian(20, 10))
    assert curve.dtype == torch.float64 and curve.shape == (10,)
    assert torch.all(curve[1:] >= curve[:-1]) and float(curve[-1]) == pytest.approx(1.0)
    assert float(curve[2]) == pytest.approx(energy_share(_gaussian(20, 10), 3))


def test_random_energy_baseline_is_r_over_min_dim_and_measured_share_is_a_bit_above():
    assert random_energy_baseline(768, 3072, 8) == 8 / 768
    measured = energy_share(_gaussian(256, 512), 8)
    baseline = random_energy_baseline(256, 512, 8)
    assert baseline < measured < 3 * baseline  # Marchenko–Pastur: not flat, but the same order


def test_relative_error_is_zero_for_equal_and_one_for_zero():
    M = _gaussian(5, 5)
    assert relative_error(M, M) == 0.0
    assert relative_error(M, torch.zeros_like(M)) == pytest.approx(1.0)


def test_subspace_similarity_identical_is_one():
    A = _gaussian(8, 64)
    assert subspace_similarity(A, A, 8, 8) == pytest.approx(1.0)
    assert subspace_similarity(A, A, 2, 8) == pytest.approx(1.0)  # the top 2 lie inside the top 8
    assert subspace_similarity(A, 3.0 * A, 4, 4) == pytest.approx(1.0)  # scale does not matter


def test_subspace_similarity_orthogonal_is_zero():
    eye = torch.eye(10)
    A1, A2 = eye[:3] * torch.tensor([[3.0], [2.0], [1.0]]), eye[5:8]
    assert subspace_similarity(A1, A2, 3, 3) == pytest.approx(0.0, abs=1e-12)


def test_subspace_similarity_uses_the_top_directions():
    eye = torch.eye(10)
    A1 = torch.stack([5 * eye[0], eye[1]])  # top direction e0
    A2 = torch.stack([eye[0], 5 * eye[1]])  # top direction e1
    assert subspace_similarity(A1, A2, 1, 1) == pytest.approx(0.0, abs=1e-12)
    assert subspace_similarity(A1, A2, 2, 2) == pytest.approx(1.0)


def test_random_subspaces_give_max_ij_over_d_on_average():
    d, i, j = 64, 2, 8
    phis = [subspace_similarity(_gaussian(i, d, seed=s), _gaussian(j, d, seed=1000 + s), i, j) for s in range(200)]
    assert sum(phis) / len(phis) == pytest.approx(max(i, j) / d, rel=0.1)


@pytest.mark.parametrize("r", [0, -1, 2.0, 8, True, None])
def test_bad_r_raises_naming_r_and_range(r):
    with pytest.raises(ValueError, match=r"r must be an int with 1 <= r <= 7"):
        low_rank_approx(_gaussian(7, 9), r)
    with pytest.raises(ValueError, match="r must be"):
        energy_share(_gaussian(7, 9), r)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="2-D"):
        low_rank_approx(torch.ones(3), 1)
    with pytest.raises(ValueError, match="same d_in"):
        subspace_similarity(_gaussian(2, 5), _gaussian(2, 6), 1, 1)
    with pytest.raises(ValueError, match="i must be"):
        subspace_similarity(_gaussian(2, 5), _gaussian(2, 5), 3, 1)
    with pytest.raises(ValueError, match="zero matrix"):
        energy_share(torch.zeros(3, 3), 1)
    with pytest.raises(ValueError, match="r must be"):
        random_energy_baseline(4, 6, 5)
