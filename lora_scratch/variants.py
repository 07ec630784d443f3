"""Four variants of LoRA, each a small change to `lora.LoRALinear` (notebook 10).

    rsLoRA  scale the update by alpha / sqrt(r) instead of alpha / r     (Kalajdzievski, 2023, arXiv 2312.03732)
    LoRA+   train B with a learning rate lambda times A's                  (Hayou et al., 2024, arXiv 2402.12354)
    DoRA    W' = m * (W0 + BA) / ||W0 + BA||_c, m trained per output       (Liu et al., 2024, arXiv 2402.09353)
    PiSSA   A, B from the top-r singular directions of W, freeze the rest  (Meng et al., 2024, arXiv 2404.02948)

Each works on a model that already went through `add_lora` (same targets, r, alpha):

    add_lora(model, ["q_proj", "v_proj"], r=8, alpha=16); to_dora(model); mark_only_lora_as_trainable(model)
    opt = loraplus_optimizer(model, lr=1e-3, ratio=20)       # pass to finetune(..., optimizer=opt)
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn as nn
import torch.nn.functional as F

from .lora import LoRALinear, lora_layers

VARIANTS = ("lora", "rslora", "loraplus", "dora", "pissa")


def _need_lora(model: nn.Module) -> dict[str, LoRALinear]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA layers; call add_lora(model, targets, r, alpha) first")
    return layers


# ---------------------------------------------------------------- rsLoRA: alpha / sqrt(r)


def rslora_scaling(alpha: float, r: int) -> float:
    """gamma_r = alpha / sqrt(r) (rsLoRA, Kalajdzievski 2023, Thm. 3.2): the update BA x keeps the same
    size as r grows, where alpha / r shrinks it by 1/sqrt(r) and learning slows at high rank."""
    if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r <= 0:
        raise ValueError(f"r (the rank) must be a positive integer, got {r!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    return alpha / math.sqrt(r)


def use_rslora(model: nn.Module) -> nn.Module:
    """Switch every LoRA layer of `model` from alpha / r to alpha / sqrt(r) (in place; returns model)."""
    for layer in _need_lora(model).values():
        if layer.merged:
            raise RuntimeError("unmerge the adapter before changing its scaling (merged ΔW uses the old one)")
        layer.scaling = rslora_scaling(layer.lora_alpha, layer.r)
    model.lora_config = dict(getattr(model, "lora_config", {}), use_rslora=True)
    return model


# ---------------------------------------------------------------- LoRA+: B learns lambda times faster


def loraplus_param_groups(model: nn.Module, lr: float, ratio: float = 20.0, weight_decay: float = 0.0) -> list[dict]:
    """Two optimizer groups: every lora_A at lr, every lora_B at lr * ratio (LoRA+, Hayou et al. 2024, §3).

    Each group carries "lr_scale" (1 and ratio): `train.train` sets a group's lr to the schedule's lr
    times lr_scale at every step, so the ratio survives warm-up and decay."""
    if not ratio > 0:
        raise ValueError(f"ratio (lambda = lr_B / lr_A) must be > 0, e.g. 16 or 20; got {ratio!r}")
    layers = _need_lora(model).values()
    a_params = [layer.lora_A for layer in layers]
    b_params = [layer.lora_B for layer in layers]
    return [{"params": a_params, "lr": lr, "lr_scale": 1.0, "weight_decay": weight_decay, "name": "lora_A"},
            {"params": b_params, "lr": lr * ratio, "lr_scale": float(ratio), "weight_decay": weight_decay,
             "name": "lora_B"}]


def loraplus_optimizer(model: nn.Module, lr: float, ratio: float = 20.0) -> torch.optim.AdamW:
    """AdamW over the LoRA+ groups, with the betas of train.make_optimizer so only the ratio differs."""
    return torch.optim.AdamW(loraplus_param_groups(model, lr, ratio), lr=lr, betas=(0.9, 0.99))


# ---------------------------------------------------------------- DoRA: magnitude and direction


def column_norm(weight: torch.Tensor) -> torch.Tensor:
    """||W||_c of DoRA: one norm per output feature. In PyTorch's (out, in) layout that is dim=1, shape (out,)."""
    return weight.norm(p=2, dim=1)


def dora_weight(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, m: torch.Tensor, scaling: float) -> torch.Tensor:
    """W' = m * V / ||V||_c with V = W + scaling * B A (DoRA, Eq. 5); the norm is detached (§4.3).

    W (out, in), A (r, in), B (out, r), m (out,): each output feature's row gets length m."""
    direction = W + scaling * (B @ A)  # (out, in)
    norm = column_norm(direction).detach()  # (out,): a constant for autograd, as in §4.3
    return (m / norm).unsqueeze(1) * direction


class DoRALinear(LoRALinear):
    """W' = m * (W0 + s BA) / ||W0 + s BA||_c  (DoRA, Liu et al. 2024, Eq. 5), m (out,) trained.

    The norm is detached (treated as a constant in the backward pass, §4.3): the gradient then flows
    only through the direction's numerator, which saves memory and changes accuracy little."""

    def __init__(self, base: nn.Linear, r: int, alpha: float = 1.0, dropout: float = 0.0):
        super().__init__(base, r, alpha, dropout)
        # m starts at ||W0||_c, so W' = W0 at init (B = 0); named lora_* so the LoRA helpers train it
        self.lora_magnitude = nn.Parameter(column_norm(base.weight.detach()).clone())
        self._weight_before_merge: torch.Tensor | None = None

    @classmethod
    def from_lora(cls, layer: LoRALinear) -> DoRALinear:
        """A DoRA layer with the same base, r, alpha and the same A, B values as `layer`."""
        dropout = layer.lora_dropout.p if isinstance(layer.lora_dropout, nn.Dropout) else 0.0
        new = cls(layer.base, layer.r, layer.lora_alpha, dropout).train(layer.training)
        with torch.no_grad():
            new.lora_A.copy_(layer.lora_A)
            new.lora_B.copy_(layer.lora_B)
        new.scaling = layer.scaling
        return new

    def dora_weight(self) -> torch.Tensor:
        """The adapted weight W' (out, in); its direction's norm is detached (§4.3)."""
        return dora_weight(self.base.weight, self.lora_A, self.lora_B, self.lora_magnitude, self.scaling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged or self.disabled:
            return self.base(x)
        # dropout, if any, acts on the input of the whole adapted layer here (a simplification of §4.3)
        return F.linear(self.lora_dropout(x), self.dora_weight(), self.base.bias)

    def merge(self) -> None:
        """Replace W0 by W' (not additive: m rescales every row). The old W0 is kept to unmerge exactly."""
        if self.merged:
            raise RuntimeError("this DoRA layer is already merged; call unmerge() first")
        if self.training:
            raise RuntimeError("merge() is for inference: call model.eval() first")
        if self.disabled:
            raise RuntimeError("this adapter is disabled; enable it before merging")
        with torch.no_grad():
            self._weight_before_merge = self.base.weight.detach().clone()
            self.base.weight.copy_(self.dora_weight())
        self.merged = True

    def unmerge(self) -> None:
        if not self.merged:
            raise RuntimeError("this DoRA layer is not merged, so there is nothing to unmerge")
        with torch.no_grad():
            self.base.weight.copy_(self._weight_before_merge)
        self._weight_before_merge = None
        self.merged = False


def to_dora(model: nn.Module) -> nn.Module:
    """Replace every LoRALinear of `model` by a DoRALinear with the same A and B (in place; returns model)."""
    for name, layer in _need_lora(model).items():
        if isinstance(layer, DoRALinear):
            continue
        if layer.merged:
            raise RuntimeError(f"{name} is merged; unmerge before converting it to DoRA")
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, DoRALinear.from_lora(layer))
    model.lora_config = dict(getattr(model, "lora_config", {}), use_dora=True)
    return model


# ---------------------------------------------------------------- PiSSA: principal singular directions


def pissa_factors(weight: torch.Tensor, r: int, scaling: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with scaling * B @ A = U_r diag(S_r) V_r^T, the top-r part of W = U S V^T (PiSSA, §3).

    sqrt(S_r / scaling) goes to each factor: A = diag(.) V_r^T (r, in), B = U_r diag(.) (out, r)."""
    if not 0 < r <= min(weight.shape):
        raise ValueError(f"r must be in 1..{min(weight.shape)} for a {tuple(weight.shape)} weight, got {r}")
    U, S, Vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    root = (S[:r] / scaling).sqrt()  # (r,)
    A = root.unsqueeze(1) * Vh[:r]  # (r, in)
    B = U[:, :r] * root  # (out, r)
    return A.to(weight.dtype), B.to(weight.dtype)


def pissa_init_(layer: LoRALinear) -> LoRALinear:
    """A, B from the top-r singular triplets of W; the frozen base becomes the residual W - s B A.
    The layer's output is unchanged (within float rounding), but training now moves W's main directions."""
    if layer.merged:
        raise RuntimeError("unmerge the layer before a PiSSA init")
    A, B = pissa_factors(layer.base.weight, layer.r, layer.scaling)
    with torch.no_grad():
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
        layer.base.weight -= layer.delta_weight()  # the residual W_res = W - s B A stays frozen
    return layer


def to_pissa(model: nn.Module) -> nn.Module:
    """PiSSA-initialise every LoRA layer of `model` (in place; returns model)."""
    for layer in _need_lora(model).values():
        pissa_init_(layer)
    model.lora_config = dict(getattr(model, "lora_config", {}), init="pissa")
    return model


# ---------------------------------------------------------------- one entry point for the scripts


def apply_variant(model: nn.Module, variant: str) -> nn.Module:
    """Turn a model fresh from add_lora into `variant` ('lora' and 'loraplus' change nothing here:
    LoRA+ differs only in its optimizer, see loraplus_optimizer)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant == "rslora":
        use_rslora(model)
    elif variant == "dora":
        to_dora(model)
    elif variant == "pissa":
        to_pissa(model)
    return model


def delta_norms(model: nn.Module) -> dict[str, float]:
    """||s B A||_F per adapted layer: how far each adapter moved its weight."""
    with torch.no_grad():
        return {name: float(layer.delta_weight().norm()) for name, layer in lora_layers(model).items()}


def subspace_grid(A1: torch.Tensor, A2: torch.Tensor, i_max: int, j_max: int) -> torch.Tensor:
    """phi(A1, A2, i, j) for i = 1..i_max, j = 1..j_max as an (i_max, j_max) grid (LoRA paper §7.2, Fig. 3).

    Equal to linalg.subspace_similarity entry by entry, but with one SVD per matrix: the top-i
    directions are the first i of the top-i_max, so phi(i, j) = (sum of the first i x j squared
    cosines) / min(i, j), a 2-D cumulative sum."""
    from .linalg import top_right_singular_vectors

    U1 = top_right_singular_vectors(A1, i_max)  # (i_max, d_in), orthonormal rows
    U2 = top_right_singular_vectors(A2, j_max)  # (j_max, d_in)
    cos2 = (U1 @ U2.T).pow(2)  # (i_max, j_max)
    i = torch.arange(1, i_max + 1, dtype=cos2.dtype).unsqueeze(1)
    j = torch.arange(1, j_max + 1, dtype=cos2.dtype).unsqueeze(0)
    return cos2.cumsum(0).cumsum(1) / torch.minimum(i, j)


# ---------------------------------------------------------------- reading the sweeps (scripts/sweep_*.py)


def summarize_runs(runs: dict[str, dict]) -> dict[str, dict]:
    """Group runs 'name/.../seed=k' by everything before '/seed='; per group the mean and the sample standard
    deviation over seeds of the final Folio and modern val losses and of the mean ||ΔW||_F."""
    groups: dict[str, list[dict]] = {}
    for key, run in runs.items():
        groups.setdefault(key.rsplit("/seed=", 1)[0], []).append(run)
    table = {}
    for name, rs in groups.items():
        row = {"seeds": len(rs), "trainable_params": rs[0].get("trainable_params"), "lr": rs[0]["config"]["lr"]}
        for field, get in (("folio", lambda r: r["after"]["folio_val"]), ("modern", lambda r: r["after"]["modern_val"]),
                           ("delta_norm", lambda r: r.get("mean_delta_norm", float("nan")))):
            t = torch.tensor([get(r) for r in rs], dtype=torch.float64)
            row[field] = float(t.mean())
            row[field + "_std"] = float(t.std()) if len(rs) > 1 else 0.0
        table[name] = row
    return table


def is_finding(mean_a: float, std_a: float, mean_b: float, std_b: float, factor: float = 2.0) -> bool:
    """A difference counts only if it exceeds `factor` times the larger seed standard deviation of the two:
    with 3 seeds, anything smaller is indistinguishable from the choice of seed."""
    return abs(mean_a - mean_b) > factor * max(std_a, std_b)
