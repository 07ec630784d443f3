"""Serving LoRA: merging, what low precision loses, and the storage of many adapters on one base.

Hu et al., 2021 (arXiv 2106.09685) §4.2: W = W0 + BA can be computed and stored, so inference costs exactly
what the base costs; and because only BA differs between tasks, one base serves many tasks — 100 GPT-3
models cost ≈ 354 GB instead of 35 TB.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def merge_weight(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, scaling: float) -> torch.Tensor:
    """W0 + scaling * B A: W (out, in), A (r, in), B (out, r). A new tensor in W's dtype; W is left unchanged.
    Computed in at least fp32 and rounded once, as LoRALinear.merged_weight (bf16 would round B A, then the sum)."""
    wide = torch.promote_types(W.dtype, torch.float32)
    return (W.to(wide) + scaling * (B.to(wide) @ A.to(wide))).to(W.dtype)


def merged_linear(layer: nn.Module) -> nn.Linear:
    """A new plain nn.Linear that computes what the LoRALinear `layer` computes, with ΔW folded into the
    weight (W0 + scaling · B A; for a DoRA layer its m · V / ||V||_c), the base's bias, dtype and device.
    `layer` is left as it was."""
    base = layer.base
    # merged_weight is W0 + ΔW, or DoRA's m · V / ||V||_c (not additive), rounded once to the base's dtype
    weight = base.weight if layer.merged else layer.merged_weight()
    out = nn.Linear(layer.in_features, layer.out_features, bias=base.bias is not None,
                    dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        out.weight.copy_(weight)
        if base.bias is not None:
            out.bias.copy_(base.bias)
    return out.eval()


def bf16_roundtrip(t: torch.Tensor) -> torch.Tensor:
    """Store in bfloat16 (8 significant bits), read back as fp32."""
    return t.to(torch.bfloat16).float()


def int4_roundtrip(t: torch.Tensor, block: int = 64) -> torch.Tensor:
    """Blockwise absmax 4-bit (levels -7..7, one fp32 scale per `block` numbers), read back as fp32.
    A simple stand-in for NF4 (notebook 09 builds the real one)."""
    flat = t.reshape(-1, block)
    scale = flat.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 7
    return (torch.round(flat / scale).clamp(-7, 7) * scale).reshape(t.shape)


def merge_loss(W: torch.Tensor, delta: torch.Tensor, roundtrip) -> tuple[float, float]:
    """What merging ΔW into a low-precision W loses: (share of ΔW's entries that vanish entirely,
    relative error ‖applied − ΔW‖_F / ‖ΔW‖_F), where applied = stored(W + ΔW) − stored(W)."""
    applied = roundtrip(W + delta) - roundtrip(W)
    vanished = float((applied == 0).float().mean())
    return vanished, float(torch.linalg.norm(applied - delta) / torch.linalg.norm(delta))


def storage_bytes(n_base: int, n_adapter: int, n_tenants: int, bytes_per_param: int = 2) -> int:
    """One shared base plus one adapter per tenant (not n_tenants full copies)."""
    return (n_base + n_tenants * n_adapter) * bytes_per_param


def full_copies_bytes(n_base: int, n_tenants: int, bytes_per_param: int = 2) -> int:
    """The alternative: every tenant stores its own fine-tuned copy of the whole model."""
    return n_tenants * n_base * bytes_per_param


def merge_and_unload(model: torch.nn.Module) -> torch.nn.Module:
    """Merge every LoRA layer and put its plain nn.Linear back in its place (PEFT's merge_and_unload).

    Merged weights left inside the LoRALinear wrappers still cost one extra Python module call per layer;
    unloaded, the model is a plain GPT again with exactly the base's modules. In place; returns model."""
    from .lora import lora_layers

    model.eval()  # merging is defined in eval mode (the merge contract)
    for name, layer in lora_layers(model).items():
        if not layer.merged:
            layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer.base)
    if hasattr(model, "lora_config"):
        del model.lora_config
    return model
