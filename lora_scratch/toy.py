"""Notebook 05's small pieces: the LoRA layer as three plain functions, and a planted-ΔW toy problem.

The functions `init_lora`, `lora_forward` and `merged_weight` are the package's `LoRALinear` seen as
functions of tensors (they call it, so there is one copy of the maths). The toy problem: a frozen
Linear W0 plus a planted rank-k update ΔW*; LoRA of rank r should recover ΔW* when r ≥ k, and below
that the best it can do is the Eckart–Young bound (Hu et al., 2021, §4.1 and §7).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .lora import LoRALinear


def _layer(W: torch.Tensor, b: torch.Tensor | None, A: torch.Tensor, B: torch.Tensor, alpha: float,
           r: int) -> LoRALinear:
    """A LoRALinear holding exactly these tensors (copies, so the caller's tensors stay untouched)."""
    base = nn.Linear(W.shape[1], W.shape[0], bias=b is not None, dtype=W.dtype)
    layer = LoRALinear(base, r, alpha)
    with torch.no_grad():
        base.weight.copy_(W)
        if b is not None:
            base.bias.copy_(b)
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
    return layer


def init_lora(in_features: int, out_features: int, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (r, in) Kaiming-uniform, B (out, r) zeros: BA = 0, the model starts unchanged (§4.1)."""
    layer = LoRALinear(nn.Linear(in_features, out_features), r)
    return layer.lora_A.detach().clone(), layer.lora_B.detach().clone()


def lora_forward(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, A: torch.Tensor, B: torch.Tensor,
                 alpha: float, r: int) -> torch.Tensor:
    """h = x W0ᵀ + b + (alpha / r) · x Aᵀ Bᵀ, i.e. W0 x + (alpha / r) B A x for each row x (§4.1)."""
    with torch.no_grad():
        return _layer(W, b, A, B, alpha, r)(x)


def merged_weight(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float, r: int) -> torch.Tensor:
    """W0 + (alpha / r) B A: a new (out, in) matrix; W itself is not modified (§4.1, no added latency)."""
    with torch.no_grad():
        return W + _layer(W, None, A, B, alpha, r).delta_weight()


# ---------------------------------------------------------------- the planted-ΔW toy problem


@dataclass
class Planted:
    """y = x (W0 + ΔW*)ᵀ with ΔW* = U diag(s) Vᵀ of rank k; x has orthogonal columns (xᵀx = n I)."""

    W0: torch.Tensor  # (d, d) frozen base weight
    delta: torch.Tensor  # (d, d) planted update, rank k
    s: torch.Tensor  # (k,) its singular values, descending
    x: torch.Tensor  # (n, d) inputs
    y: torch.Tensor  # (n, d) targets


def planted_problem(d: int = 64, s: tuple[float, ...] = (2.0, 1.5, 1.0, 0.5), n: int = 256,
                    seed: int = 0) -> Planted:
    """A frozen random W0 and a planted ΔW* of rank len(s) with singular values s."""
    g = torch.Generator().manual_seed(seed)
    W0 = torch.randn(d, d, generator=g) / d ** 0.5
    U, _ = torch.linalg.qr(torch.randn(d, len(s), generator=g))
    V, _ = torch.linalg.qr(torch.randn(d, len(s), generator=g))
    s_t = torch.tensor(s)
    delta = U @ torch.diag(s_t) @ V.T
    Q, _ = torch.linalg.qr(torch.randn(n, d, generator=g))
    x = Q * n ** 0.5  # xᵀx = n I: the mean squared error is then exactly ‖ΔW* − ΔW‖_F² / d
    return Planted(W0, delta, s_t, x, x @ (W0 + delta).T)


def loss_floor(problem: Planted, r: int) -> float:
    """Eckart–Young: no rank-r ΔW gets a mean squared error below (s_{r+1}² + ...) / d here."""
    return float((problem.s[r:] ** 2).sum()) / problem.delta.shape[0]


INITS = ("A", "B")


def fit_lora(problem: Planted, r: int, steps: int = 300, lr: float = 0.02, alpha: float | None = None,
             seed: int = 0, init: str = "A") -> tuple[LoRALinear, list[float]]:
    """Train only A and B of a LoRALinear around the frozen W0 (full batch, Adam); return it and the losses.

    init "A" is the usual start (A random, B = 0; Hayou et al., 2024, arXiv 2406.08447, call it Init[A]);
    "B" swaps the roles (Init[B]): A = 0 and B random, drawn as PyTorch draws a Linear's weight of fan-in r,
    just as A is drawn with fan-in `in`. Both start with B A = 0."""
    if init not in INITS:
        raise ValueError(f"init must be 'A' (A random, B = 0: the usual start) or 'B' (A = 0, B random), got {init!r}")
    torch.manual_seed(seed)  # the random factor's init
    d = problem.W0.shape[0]
    base = nn.Linear(d, d, bias=False)
    with torch.no_grad():
        base.weight.copy_(problem.W0)
    layer = LoRALinear(base, r, alpha if alpha is not None else r)  # alpha = r: scaling 1
    if init == "B":
        with torch.no_grad():
            nn.init.kaiming_uniform_(layer.lora_B, a=5 ** 0.5)  # fan-in r, as A's init has fan-in d
            layer.lora_A.zero_()
    opt = torch.optim.Adam([layer.lora_A, layer.lora_B], lr=lr)
    losses = []
    for _ in range(steps):
        loss = (layer(problem.x) - problem.y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return layer, losses


def update_norm_after(problem: Planted, r: int, alpha: float, steps: int = 20, lr: float = 1e-3,
                      seed: int = 0) -> float:
    """‖ΔW‖_F = ‖(alpha / r) B A‖_F after a few Adam steps: how far a step moves the layer at this rank."""
    layer, _ = fit_lora(problem, r, steps=steps, lr=lr, alpha=alpha, seed=seed)
    return float(torch.linalg.norm(layer.delta_weight().detach()))
