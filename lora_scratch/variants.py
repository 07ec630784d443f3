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

from .adapter_format import Variant, register_variant
from .lora import LoRALinear, adapted_fingerprint, lora_layers
from .lora_layer import _store_weight
from .variant_analysis import delta_norms, subspace_grid, summarize_runs

__all__ = ["VARIANTS", "DoRALinear", "apply_variant", "column_norm", "delta_norms", "dora_weight",
           "loraplus_optimizer", "loraplus_param_groups", "pissa_factors", "pissa_init_", "rslora_scaling",
           "subspace_grid", "summarize_runs", "to_dora", "to_pissa", "use_rslora"]  # the last four: variant_analysis

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
    layers = _need_lora(model)
    for layer in layers.values():
        if layer.merged:
            raise RuntimeError("unmerge the adapter before changing its scaling (merged ΔW uses the old one)")
        if _is_pissa(layer):
            raise RuntimeError("call use_rslora before to_pissa: PiSSA's residual base was computed with the "
                               "current scaling, and a new one would no longer add back what it took out")
    for layer in layers.values():
        layer.rslora = True  # recorded, so save_adapter names the variant and a reload rebuilds it
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
    only through the direction's numerator, which saves memory and changes accuracy little.

    The forward never multiplies x by W' itself. With g = m / ||W0 + s BA||_c (out,), a constant for autograd,
        W' x = g * (W0 x) + g * s * B A x,
    so it runs as the base's output plus (g - 1) * W0 x_d + g * s * B A x_d, x_d the dropped-out input: the
    frozen path sees x undropped, as in the authors' code and PEFT. F.linear(x, W') would make autograd form
    dL/dW', an (out, in) gradient like full fine-tuning's; here the gradients are A's, B's and m's only. The
    (out, in) matrix W0 + s BA is still built once per forward, without gradient, for its row norms."""

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
        new.scaling, new.rslora = layer.scaling, getattr(layer, "rslora", False)
        for name, buffer in layer.named_buffers(recurse=False):  # PiSSA's initial factors, if any
            new.register_buffer(name, buffer)
        return new

    def dora_weight(self) -> torch.Tensor:
        """The adapted weight W' (out, in); its direction's norm is detached (§4.3)."""
        return dora_weight(self.base.weight, self.lora_A, self.lora_B, self.lora_magnitude, self.scaling)

    def merged_weight(self) -> torch.Tensor:
        """W' in W0's dtype, computed in at least fp32 and rounded once (as LoRALinear.merged_weight)."""
        w = self.base.weight
        wide = torch.promote_types(w.dtype, torch.float32)
        return dora_weight(w.to(wide), self.lora_A.to(wide), self.lora_B.to(wide), self.lora_magnitude.to(wide),
                           self.scaling).to(w.dtype)

    def get_extra_state(self) -> dict:
        """The merged flag and, while merged, the W0 that unmerge() puts back (DoRA's merge is not additive)."""
        return {"merged": self.merged, "weight_before_merge": self._weight_before_merge}

    def set_extra_state(self, state: dict) -> None:
        self.merged = bool(state["merged"])
        before = state.get("weight_before_merge")
        self._weight_before_merge = None if before is None else before.detach().clone()

    def row_scale(self) -> torch.Tensor:
        """g = m / ||W0 + s BA||_c, shape (out,); the norm is a constant for autograd (§4.3)."""
        with torch.no_grad():
            norm = column_norm(self.base.weight + self.scaling * (self.lora_B @ self.lora_A))  # (out,)
        return self.lora_magnitude / norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)  # W0 x + b, x not dropped
        if self.merged or self.disabled:
            return out
        x_d = self.lora_dropout(x)
        g = self.row_scale()  # (out,)
        if isinstance(self.lora_dropout, nn.Identity) or not self.training:
            frozen = out if self.base.bias is None else out - self.base.bias  # W0 x_d = W0 x: reuse it
        else:
            frozen = F.linear(x_d, self.base.weight)  # W0 on the dropped input: one more frozen matmul
        low_rank = (x_d @ self.lora_A.T @ self.lora_B.T) * self.scaling  # (..., out), never (out, in)
        return out + (g - 1) * frozen + g * low_rank

    def merge(self) -> None:
        """Replace W0 by W' (not additive: m rescales every row). The old W0 is kept to unmerge exactly."""
        if self.merged:
            raise RuntimeError("this DoRA layer is already merged; call unmerge() first")
        if self.training:
            raise RuntimeError("merge() is for inference: call model.eval() first")
        if self.disabled:
            raise RuntimeError("this adapter is disabled; enable it before merging")
        with torch.no_grad():
            before = self.base.weight.detach().clone()
            _store_weight(self.base, self.merged_weight())  # an NF4 base refuses here, before anything changed
            self._weight_before_merge = before
        self.merged = True

    def unmerge(self) -> None:
        if not self.merged:
            raise RuntimeError("this DoRA layer is not merged, so there is nothing to unmerge")
        with torch.no_grad():
            _store_weight(self.base, self._weight_before_merge)
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


def _is_pissa(layer: LoRALinear) -> bool:
    return getattr(layer, "pissa_A0", None) is not None


def _pissa_problem(layer: LoRALinear) -> str | None:
    if layer.merged:
        return "unmerge the layer before a PiSSA init"
    if _is_pissa(layer):
        return ("this layer is already PiSSA-initialised: a second init would subtract the top-r part of the "
                "residual as well. Start again from a model fresh from add_lora.")
    if not 0 < layer.r <= min(layer.base.weight.shape):
        return f"r must be in 1..{min(layer.base.weight.shape)} for this layer's weight, got {layer.r}"
    return None


def _subtract_principal(layer: LoRALinear, A: torch.Tensor, B: torch.Tensor) -> None:
    """A, B := the given factors; base := W - s B A. The same steps at init and when an adapter is loaded, so the
    residual comes out bit for bit the same. The factors are kept (pissa_A0, pissa_B0) for the adapter file."""
    with torch.no_grad():
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
        layer.register_buffer("pissa_A0", layer.lora_A.detach().clone())
        layer.register_buffer("pissa_B0", layer.lora_B.detach().clone())
        layer.base.weight -= layer.delta_weight()  # the residual W_res = W - s B A stays frozen


def pissa_init_(layer: LoRALinear) -> LoRALinear:
    """A, B from the top-r singular triplets of W; the frozen base becomes the residual W - s B A.
    The layer's output is unchanged (within float rounding), but training now moves W's main directions."""
    problem = _pissa_problem(layer)
    if problem:
        raise RuntimeError(problem)
    _subtract_principal(layer, *pissa_factors(layer.base.weight, layer.r, layer.scaling))
    return layer


def to_pissa(model: nn.Module) -> nn.Module:
    """PiSSA-initialise every LoRA layer of `model` (in place; returns model). Every layer is checked first.

    save_adapter stores the initial factors (pissa_A0, pissa_B0) with A and B, and the fingerprint of the
    adapted weights recorded here, so load_adapter rebuilds the very same residual on a fresh base (and refuses
    other weights). PEFT instead converts PiSSA into a plain rank-2r LoRA when saving; keeping it a PiSSA adapter
    means a reloaded one still trains as PiSSA."""
    layers = _need_lora(model)
    for name, layer in layers.items():
        problem = _pissa_problem(layer)
        if problem:
            raise RuntimeError(f"{name}: {problem}")
    fingerprint = adapted_fingerprint(model, layers)
    for layer in layers.values():
        pissa_init_(layer)
    model.lora_config = dict(getattr(model, "lora_config", {}), init="pissa", adapted_fingerprint=fingerprint)
    return model


def _rebuild_pissa(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """load_adapter's PiSSA step: subtract the file's initial factors from the fresh base's weights."""
    for name, layer in lora_layers(model).items():
        _subtract_principal(layer, tensors[f"{name}.pissa_A0"], tensors[f"{name}.pissa_B0"])


# ---------------------------------------------------------------- what load_adapter needs to rebuild each variant

register_variant(Variant("rslora", "rsLoRA", used_by=lambda layer: getattr(layer, "rslora", False),
                         rebuild=lambda model, tensors: use_rslora(model), scaling=rslora_scaling,
                         flags={"use_rslora": True}))
register_variant(Variant("dora", "DoRA", used_by=lambda layer: isinstance(layer, DoRALinear),
                         rebuild=lambda model, tensors: to_dora(model), tensors={"lora_magnitude": "out"},
                         flags={"use_dora": True}))
register_variant(Variant("pissa", "PiSSA", used_by=_is_pissa, rebuild=_rebuild_pissa,
                         tensors={"pissa_A0": "lora_A", "pissa_B0": "lora_B"}, frozen=("pissa_A0", "pissa_B0"),
                         config_keys=("adapted_fingerprint",), flags={"init": "pissa"}, keeps_base=False))


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
