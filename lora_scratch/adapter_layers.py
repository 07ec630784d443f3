"""Houlsby-style bottleneck adapters: the method LoRA compares against for inference latency.

Houlsby et al., 2019 ("Parameter-Efficient Transfer Learning for NLP", arXiv 1902.00751, §2.1) insert a
small bottleneck module twice per transformer block: after the attention's output projection and after
the feed-forward network, each before the residual addition:

    h = y + up(gelu(down(y)))        y = the sublayer's output (..., d), down: d -> m, up: m -> d

`up` starts at zero, so the model starts unchanged (as LoRA's B = 0). Unlike LoRA, the adapter sits *in
series* with the layer and can never be merged into a weight: its extra operations run at every forward,
which is why LoRA's Table 1 (Hu et al., 2021, §3) finds adapters slow at small batch sizes.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

HOULSBY_TARGETS = ("o_proj", "down_proj")  # the attention output and the MLP output of every block


class BottleneckAdapter(nn.Module):
    """A frozen `layer` followed by y + up(gelu(down(y))) with a bottleneck of size m."""

    def __init__(self, layer: nn.Linear, bottleneck: int):
        super().__init__()
        if isinstance(bottleneck, bool) or not isinstance(bottleneck, int) or bottleneck <= 0:
            raise ValueError(f"bottleneck must be a positive integer, got {bottleneck!r}")
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"BottleneckAdapter follows an nn.Linear, got {type(layer).__name__}")
        self.layer = layer
        for p in self.layer.parameters():
            p.requires_grad_(False)
        d = layer.out_features
        w = layer.weight
        self.down = nn.Linear(d, bottleneck, dtype=w.dtype, device=w.device)
        self.up = nn.Linear(bottleneck, d, dtype=w.dtype, device=w.device)
        nn.init.zeros_(self.up.weight)  # the adapter starts as the identity: model unchanged
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layer(x)  # (..., d)
        return y + self.up(F.gelu(self.down(y)))  # (..., m) in the middle: the bottleneck


def add_adapters(model: nn.Module, bottleneck: int = 8, targets: tuple[str, ...] = HOULSBY_TARGETS) -> nn.Module:
    """Put a BottleneckAdapter after every Linear whose name ends with a target (in place; returns model)."""
    names = [n for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in targets]
    if not names:
        raise ValueError(f"no nn.Linear named {targets} in this model")
    for name in names:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, child, BottleneckAdapter(getattr(owner, child), bottleneck))
    return model


def adapter_params(d: int, bottleneck: int) -> int:
    """Parameters of one adapter: down (d*m + m) plus up (m*d + d)."""
    return 2 * d * bottleneck + bottleneck + d
