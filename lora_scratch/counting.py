"""Counting parameters: a Linear layer, its LoRA update, and a whole model.

    linear_params(768, 768, bias=False) = 589,824      lora_params(768, 768, r=4) = 6,144 (1.04 %)
"""
from __future__ import annotations

import torch.nn as nn


def linear_params(d_in: int, d_out: int, bias: bool = True) -> int:
    """A Linear layer y = W x + b stores W (d_out, d_in) and b (d_out,)."""
    return d_in * d_out + (d_out if bias else 0)


def lora_params(d_in: int, d_out: int, r: int) -> int:
    """LoRA's A (r, d_in) and B (d_out, r): (d_in + d_out) * r numbers (Hu et al., 2021, §4.1)."""
    return (d_in + d_out) * r


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Numbers stored in the model's parameters; a tied weight (lm_head = tok_emb) counts once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
