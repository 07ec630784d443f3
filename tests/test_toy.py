"""The functional LoRA pieces equal LoRALinear; the planted-ΔW toy behaves as Eckart–Young says."""
import torch
import torch.nn as nn

from lora_scratch.lora import LoRALinear
from lora_scratch.toy import fit_lora, init_lora, lora_forward, loss_floor, merged_weight, planted_problem


def test_init_lora_shapes_and_zero_b():
    A, B = init_lora(12, 5, 3)
    assert A.shape == (3, 12) and B.shape == (5, 3)
    assert bool((B == 0).all()) and bool((A != 0).all()) and float(A.abs().max()) <= 12 ** -0.5


def test_forward_and_merge_match_the_layer():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(6, 4), r=2, alpha=3.0)
    nn.init.normal_(layer.lora_B)
    x = torch.randn(2, 5, 6)
    W, b, A, B = (t.detach() for t in (layer.base.weight, layer.base.bias, layer.lora_A, layer.lora_B))
    W_before = W.clone()
    assert torch.equal(lora_forward(x, W, b, A, B, 3.0, 2), layer(x).detach())
    merged = merged_weight(W, A, B, 3.0, 2)
    assert torch.equal(W, W_before)  # pure: the caller's W is untouched
    assert torch.allclose(merged, W + 1.5 * B @ A)


def test_planted_problem_is_exact_rank_k_with_orthogonal_inputs():
    p = planted_problem(d=16, s=(3.0, 1.0), n=32)
    assert torch.linalg.matrix_rank(p.delta) == 2
    assert torch.allclose(torch.linalg.svdvals(p.delta)[:2], p.s, atol=1e-5)
    assert torch.allclose(p.x.T @ p.x, 32 * torch.eye(16), atol=1e-3)
    assert loss_floor(p, 0) == (9 + 1) / 16 and loss_floor(p, 1) == 1 / 16 and loss_floor(p, 2) == 0


def test_lora_recovers_the_planted_update_only_when_r_reaches_k():
    p = planted_problem(d=16, s=(2.0, 1.0), n=32)
    _, below = fit_lora(p, r=1, steps=300)
    layer, enough = fit_lora(p, r=2, steps=300)
    assert below[-1] >= loss_floor(p, 1) - 1e-6 and below[-1] < 1.05 * loss_floor(p, 1)
    assert enough[-1] < 1e-4 and torch.allclose(layer.delta_weight().detach(), p.delta, atol=1e-2)
    assert not layer.base.weight.requires_grad and torch.equal(layer.base.weight, p.W0)  # W0 stayed frozen
