"""The LoRA layer and how it goes into a model (Hu et al., 2021, arXiv 2106.09685).

    h = W0 x + (alpha / r) * B A x        W0 (out, in) frozen, A (r, in), B (out, r) trained

B starts at zero, so BA = 0 and the wrapped model starts exactly where the base was (§4.1).
Names follow PEFT (`base_layer` there is `base` here; `r`, `lora_alpha`, `lora_A`, `lora_B`,
`lora_dropout`), so moving on to PEFT needs no relearning. Notebook 05 builds the layer, notebook 07
puts it into a GPT with add_lora; lora.py (which re-exports all of this) merges, saves and loads.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn as nn

from .adapter_format import REGISTRY, _check_hparams


def _store_weight(base: nn.Module, value: torch.Tensor) -> None:
    """Put `value` into base.weight in place, through the attribute: a base whose weight is computed (the NF4
    base of notebook 09) refuses there with its reason, instead of an in-place copy into a temporary that would
    change nothing."""
    weight = base.weight
    weight.copy_(value)
    base.weight = weight


class LoRALinear(nn.Module):
    """A frozen nn.Linear `base` plus the low-rank path (alpha / r) * B A."""

    def __init__(self, base: nn.Linear, r: int, alpha: float = 1.0, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        _check_hparams(r, alpha, dropout)
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)  # W0 stays frozen: no gradient, no optimizer state
        self.r, self.lora_alpha, self.scaling = int(r), float(alpha), alpha / r
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device))
        # A random, B zero: BA = 0 at the start, yet A's gradient is nonzero once B moves.
        # Kaiming-uniform (a = sqrt 5) as in loralib and PEFT; the paper says "random Gaussian".
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.disabled = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (alpha / r) * B A, shape (out, in) like the base weight."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)  # (..., out)
        if self.merged or self.disabled:  # merged: ΔW is already inside base.weight
            return out
        # x A^T is (..., r): the update never forms the (out, in) matrix
        return out + (self.lora_dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def merge(self) -> None:
        """W0 += ΔW, so inference costs one matmul again. Only in eval() mode, only once."""
        if self.merged:
            raise RuntimeError("this LoRA layer is already merged; merging again would add ΔW twice. "
                               "Call unmerge() first if you want to merge again.")
        if self.training:
            raise RuntimeError("merge() is for inference: call model.eval() first "
                               "(train() unmerges, since A and B must stay separate to train).")
        if self.disabled:
            raise RuntimeError("this adapter is disabled; enable it before merging")
        with torch.no_grad():
            _store_weight(self.base, self.merged_weight())
        self.merged = True

    def unmerge(self) -> None:
        """W0 -= ΔW. Equal to the original W0 within float tolerance, not bit for bit."""
        if not self.merged:
            raise RuntimeError("this LoRA layer is not merged, so there is nothing to unmerge")
        with torch.no_grad():
            _store_weight(self.base, self.merged_weight(sign=-1))
        self.merged = False

    def train(self, mode: bool = True) -> LoRALinear:
        if mode and self.merged:
            self.unmerge()  # training needs A and B separate from W0
        return super().train(mode)

    def merged_weight(self, sign: int = 1) -> torch.Tensor:
        """W0 + ΔW (sign=-1: W0 − ΔW, what unmerge() puts back), as a new tensor in W0's dtype; the layer is
        left as it is. B A and the sum are computed in at least fp32 and rounded once: in bf16, forming B A in
        bf16 and then adding it to W0 in bf16 would round twice."""
        w = self.base.weight
        wide = torch.promote_types(w.dtype, torch.float32)
        delta = (self.lora_B.to(wide) @ self.lora_A.to(wide)) * self.scaling  # (out, in)
        return (w.to(wide) + sign * delta).to(w.dtype)

    def set_disabled(self, disabled: bool) -> None:
        """Turn the adapter off (exactly the base's output) or on again."""
        if disabled and not keeps_base(self):
            raise ValueError(NOT_THE_BASE)
        if disabled and self.merged:
            self.unmerge()  # otherwise ΔW would still be inside base.weight
        self.disabled = disabled

    def get_extra_state(self) -> dict:
        """state_dict() carries the merged flag: merged weights already hold ΔW, and loading them into an
        unmerged model must not add ΔW a second time."""
        return {"merged": self.merged}

    def set_extra_state(self, state: dict) -> None:
        self.merged = bool(state["merged"])

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"lora_alpha={self.lora_alpha:g}, merged={self.merged}, disabled={self.disabled}")


NOT_THE_BASE = ("PiSSA (to_pissa) moved the top-r singular part of W0 into A and B, so the frozen weight is only "
                "the residual: with the adapter off, this model is not the base. For the base's outputs use a fresh "
                "copy of it (load_base(), or the GPT you started from).")


def keeps_base(layer: LoRALinear) -> bool:
    return all(v.keeps_base or not v.used_by(layer) for v in REGISTRY.values())


@contextmanager
def restored_on_error(layers, with_base: bool):
    """If the block raises, every layer gets back its values, merged state, alpha, scaling and dropout, exactly
    (merge/unmerge would only restore W0 within float tolerance)."""
    saved = []
    for layer in layers:
        skip = set() if with_base else {id(p) for p in layer.base.parameters()}
        values = [(p, p.detach().clone()) for p in layer.parameters() if id(p) not in skip]
        saved.append((layer, values, layer.get_extra_state(), layer.lora_alpha, layer.scaling, layer.lora_dropout))
    try:
        yield
    except BaseException:
        for layer, values, state, alpha, scaling, dropout in saved:
            with torch.no_grad():
                for p, value in values:
                    p.copy_(value)
            layer.set_extra_state(state)
            layer.lora_alpha, layer.scaling, layer.lora_dropout = alpha, scaling, dropout
        raise


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def _matches(name: str, target: str) -> bool:
    """PEFT's rule: a target names a module exactly or by its last dotted parts ('q_proj')."""
    return name == target or name.endswith("." + target)


def _resolve_targets(model: nn.Module, targets: list[str]) -> list[str]:
    inner = {f"{n}.{child}" for n in lora_layers(model) for child in ("base", "lora_dropout")}
    names = [n for n, _ in model.named_modules() if n and n not in inner]
    linear_leaves = sorted({n.rsplit(".", 1)[-1] for n in names
                            if isinstance(model.get_submodule(n), (nn.Linear, LoRALinear))})
    chosen = []
    for target in targets:
        hits = [n for n in names if _matches(n, target)]
        if not hits:
            partly = sorted({n.rsplit(".", 1)[-1] for n in names if target in n})
            hint = f" It is only part of: {', '.join(partly)}." if partly else ""
            raise ValueError(f"target {target!r} matches no module name.{hint} Targets must name a module "
                             f"exactly or end with its name; the Linear layers here are: "
                             f"{', '.join(linear_leaves)}")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def _tied(model: nn.Module, linear: nn.Linear) -> list[str]:
    """Names of other parameters sharing this Linear's weight (e.g. lm_head tied to tok_emb)."""
    own = {n for n, m in model.named_modules(remove_duplicate=False) if m is linear}
    return [n for n, p in model.named_parameters(remove_duplicate=False)
            if p is linear.weight and n.rsplit(".", 1)[0] not in own]


def _check_wrappable(model: nn.Module, name: str) -> None:
    module = model.get_submodule(name)
    if isinstance(module, LoRALinear):
        raise ValueError(f"{name} already has a LoRA adapter; load_adapter() swaps adapters, "
                         "or start again from a fresh base")
    if not isinstance(module, nn.Linear):
        raise TypeError(f"cannot add LoRA to {name}: it is a {type(module).__name__}, and LoRA here "
                        "wraps nn.Linear layers only (e.g. q_proj, v_proj, up_proj)")
    shared = _tied(model, module)
    if shared:
        raise ValueError(f"cannot add LoRA to {name}: its weight is tied to {', '.join(shared)}. "
                         "Merging would silently change the embedding too, and safetensors refuses "
                         "shared tensors. Adapt the attention or MLP projections instead.")


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _put_back(model: nn.Module, originals: dict[str, nn.Module], saved: list, config: object) -> None:
    """Undo a failed add_lora / load_adapter: the original modules, their values and requires_grad, the config."""
    for name, module in originals.items():
        _set_module(model, name, module)
    with torch.no_grad():
        for p, requires_grad, value in saved:
            if value is not None:
                p.copy_(value)
            p.requires_grad_(requires_grad)
    if config is None:
        model.__dict__.pop("lora_config", None)
    else:
        model.lora_config = config


def add_lora(model: nn.Module, targets: list[str] | str = ("q_proj", "v_proj"), r: int = 8,
             alpha: float = 16.0, dropout: float = 0.0) -> nn.Module:
    """Wrap every nn.Linear whose name matches a target in a LoRALinear (in place; returns model).

    add_lora(gpt, targets=["q_proj", "v_proj"], r=4) adapts W_q and W_v of every block, as in
    the LoRA paper's main GPT-3 setting (§4.2, Table 5). All or nothing: every target is checked
    before the first one is wrapped, and a failure midway puts the original layers back.
    """
    _check_hparams(r, alpha, dropout)
    targets = [targets] if isinstance(targets, str) else list(targets)
    if not targets:
        raise ValueError("targets is empty: name at least one module, e.g. ['q_proj', 'v_proj']")
    all_targets = _extend_config(model, targets, r, alpha, dropout)
    originals = {name: model.get_submodule(name) for name in _resolve_targets(model, targets)}
    for name in originals:
        _check_wrappable(model, name)
    saved = [(p, p.requires_grad, None) for m in originals.values() for p in m.parameters()]
    try:
        for name, module in originals.items():
            _set_module(model, name, LoRALinear(module, r, alpha, dropout).train(module.training))  # keep eval()
    except BaseException:
        _put_back(model, originals, saved, model.__dict__.get("lora_config"))
        raise
    model.lora_config = {"target_modules": all_targets, "r": int(r), "lora_alpha": float(alpha),
                         "lora_dropout": float(dropout)}
    return model


def _extend_config(model: nn.Module, targets: list[str], r: int, alpha: float, dropout: float) -> list[str]:
    """A second add_lora on the same model adds targets; one adapter file has one r, alpha, dropout."""
    old = getattr(model, "lora_config", None)
    if not old or not lora_layers(model):
        return targets
    if (old["r"], old["lora_alpha"], old["lora_dropout"]) != (r, alpha, dropout):
        raise ValueError(f"this model already has LoRA layers with r={old['r']}, alpha={old['lora_alpha']:g}, "
                         f"dropout={old['lora_dropout']:g}; add more targets with the same values, "
                         "or start from a fresh base")
    return old["target_modules"] + [t for t in targets if t not in old["target_modules"]]


def mark_only_lora_as_trainable(model: nn.Module) -> None:
    """requires_grad=True for lora_A / lora_B only; every other parameter is frozen."""
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name or name.startswith("lora_"))


ADAPTER_KEYS = (".lora_A", ".lora_B", ".lora_magnitude")  # magnitude: DoRA's trained m (variants.py)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter: {'blocks.0.attn.q_proj.lora_A': (r, in), '...lora_B': (out, r), ...}, plus DoRA's
    '...lora_magnitude' (out,) when the layers are DoRA layers."""
    return {k: v for k, v in model.state_dict().items() if any(key in k for key in ADAPTER_KEYS)}
