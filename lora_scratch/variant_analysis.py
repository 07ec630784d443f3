"""Comparing the LoRA variants (notebook 10): how far each adapter moved its weights, the LoRA paper's §7.2
subspace similarity as a grid, and reading the seeded sweeps (scripts/sweep_*.py). variants.py re-exports these.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .lora import lora_layers


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

