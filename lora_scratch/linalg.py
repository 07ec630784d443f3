"""Rank, the SVD and how much of a matrix its top singular directions hold (notebook 01).

    low_rank_approx(M, r)        best rank-r approximation: truncated SVD (Eckart–Young)
    singular_values(M)           descending, float64
    energy_share(M, r)           sum_{i<r} s_i² / sum s_i²: the share of ||M||_F² in the top-r directions
    subspace_similarity(A1, A2, i, j)   φ of the LoRA paper, §7.2

Everything is computed in float64: the matrices of this course are small, and float64 makes the
numbers reproducible and the Eckart–Young identity hold to ~1e-12.
"""
from __future__ import annotations

import torch


def _check_matrix(M: torch.Tensor, name: str = "M") -> None:
    if not isinstance(M, torch.Tensor) or M.ndim != 2:
        shape = tuple(M.shape) if isinstance(M, torch.Tensor) else type(M).__name__
        raise ValueError(f"{name} must be a 2-D torch.Tensor (a matrix), got {shape}")


def _check_count(value: int, name: str, largest: int) -> None:
    """A rank-like argument must be a positive int no larger than the number of singular values."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= largest:
        raise ValueError(f"{name} must be an int with 1 <= {name} <= {largest}, got {value!r}")


def _as_float64(M: torch.Tensor) -> torch.Tensor:
    return M.detach().to(device="cpu", dtype=torch.float64)


def singular_values(M: torch.Tensor) -> torch.Tensor:
    """The singular values s_1 >= s_2 >= ... >= 0 of M, computed and returned in float64."""
    _check_matrix(M)
    return torch.linalg.svdvals(_as_float64(M))


def _spectrum(M_or_S: torch.Tensor) -> torch.Tensor:
    """Singular values from a matrix (2-D), or a 1-D vector of them taken as given (sorted, float64)."""
    if isinstance(M_or_S, torch.Tensor) and M_or_S.ndim == 1:
        S = _as_float64(M_or_S).abs()
        return torch.sort(S, descending=True).values
    return singular_values(M_or_S)


def low_rank_approx(M: torch.Tensor, r: int) -> torch.Tensor:
    """The best rank-r approximation of M in Frobenius (and spectral) norm: U_r diag(s_1..s_r) V_r^T.

    Eckart–Young (1936): no matrix of rank <= r is closer to M; the error is sqrt(sum_{i>r} s_i²).
    Returned with M's shape, dtype and device.
    """
    _check_matrix(M)
    _check_count(r, "r", min(M.shape))
    U, S, Vh = torch.linalg.svd(_as_float64(M), full_matrices=False)
    approx = (U[:, :r] * S[:r]) @ Vh[:r]  # scale the columns of U by s_i, same as U diag(S) Vh
    return approx.to(device=M.device, dtype=M.dtype)


def relative_error(M: torch.Tensor, M_hat: torch.Tensor) -> float:
    """||M - M_hat||_F / ||M||_F: 0 is perfect, 1 is as far as the zero matrix."""
    _check_matrix(M)
    _check_matrix(M_hat, "M_hat")
    if M.shape != M_hat.shape:
        raise ValueError(f"M and M_hat must have the same shape, got {tuple(M.shape)} and {tuple(M_hat.shape)}")
    M64 = _as_float64(M)
    return float(torch.linalg.norm(M64 - _as_float64(M_hat)) / torch.linalg.norm(M64))


def tail_error(M_or_S: torch.Tensor, r: int) -> float:
    """sqrt(sum_{i>r} s_i²): the Frobenius error of the best rank-r approximation (Eckart–Young)."""
    S = _spectrum(M_or_S)
    _check_count(r, "r", len(S))
    return float(S[r:].pow(2).sum().sqrt())


def energy_curve(M_or_S: torch.Tensor) -> torch.Tensor:
    """Cumulative energy share for r = 1..n: entry r-1 is sum_{i<=r} s_i² / sum s_i² (float64)."""
    S = _spectrum(M_or_S)
    energy = S.pow(2)  # energy is the *squared* singular value: ||M||_F² = sum s_i²
    total = energy.sum()
    if total == 0:
        raise ValueError("the energy share of a zero matrix is undefined (all singular values are 0)")
    return torch.cumsum(energy, 0) / total


def energy_share(M_or_S: torch.Tensor, r: int) -> float:
    """Share of ||M||_F² held by the top-r singular directions, in [0, 1]."""
    curve = energy_curve(M_or_S)
    _check_count(r, "r", len(curve))
    return float(curve[r - 1])


def random_energy_baseline(d_out: int, d_in: int, r: int) -> float:
    """r / min(d_out, d_in): the top-r share if every singular value were equal.

    Approximate for a random matrix: a Gaussian matrix's spectrum is not flat (Marchenko–Pastur), so
    its measured top-r share is somewhat above this (notebook 01 measures both).
    """
    _check_count(d_out, "d_out", 2**62)
    _check_count(d_in, "d_in", 2**62)
    _check_count(r, "r", min(d_out, d_in))
    return r / min(d_out, d_in)


def rank(M: torch.Tensor, tol: float | None = None) -> int:
    """Numerical rank: how many singular values exceed tol.

    Default tol = max(M.shape) · eps(M.dtype) · s_1, as numpy.linalg.matrix_rank does: rounding in M's
    own precision cannot produce singular values above it.
    """
    S = singular_values(M)
    if tol is None:
        eps = torch.finfo(M.dtype).eps if M.dtype.is_floating_point else torch.finfo(torch.float64).eps
        tol = max(M.shape) * eps * float(S[0]) if len(S) else 0.0
    return int((S > tol).sum())


def top_right_singular_vectors(A: torch.Tensor, k: int) -> torch.Tensor:
    """The top-k right-singular vectors of A (r, d_in), as the rows of a (k, d_in) float64 matrix."""
    _check_matrix(A, "A")
    _check_count(k, "k", min(A.shape))
    return torch.linalg.svd(_as_float64(A), full_matrices=False).Vh[:k]


def subspace_similarity(A1: torch.Tensor, A2: torch.Tensor, i: int, j: int) -> float:
    """φ(A1, A2, i, j) = ||U_{A1}^{i T} U_{A2}^{j}||_F² / min(i, j), in [0, 1] (Hu et al., 2021, §7.2).

    U_A are the right-singular vectors of a LoRA matrix A (r, d_in), so they live in R^{d_in}; U^i is the
    top i of them. φ = 1 when one subspace contains the other, 0 when they are orthogonal; two random
    subspaces of R^d give φ ≈ max(i, j) / d on average.
    """
    _check_matrix(A1, "A1")
    _check_matrix(A2, "A2")
    if A1.shape[1] != A2.shape[1]:
        raise ValueError(f"A1 and A2 must have the same d_in (columns), got {A1.shape[1]} and {A2.shape[1]}")
    _check_count(i, "i", min(A1.shape))
    _check_count(j, "j", min(A2.shape))
    U1 = top_right_singular_vectors(A1, i)  # (i, d_in), orthonormal rows
    U2 = top_right_singular_vectors(A2, j)  # (j, d_in)
    overlap = U1 @ U2.T  # (i, j): cosines between the two sets of directions
    return float(overlap.pow(2).sum() / min(i, j))


def delta_weights(base_state: dict[str, torch.Tensor], ft_state: dict[str, torch.Tensor],
                  names: list[str]) -> dict[str, torch.Tensor]:
    """ΔW = W_ft − W_base for each name: what full fine-tuning added to each matrix (Hu et al., 2021, §4.1).

    New tensors; the two state dicts are left untouched.
    """
    return {name: ft_state[name].detach().float() - base_state[name].detach().float() for name in names}


def rank_for_share(S: torch.Tensor, share: float = 0.9) -> int:
    """Smallest r whose top-r singular directions hold at least `share` of Σ s_i² (S sorted descending)."""
    return int((energy_curve(S) < share).sum()) + 1  # how many prefixes fall short, plus one
