"""The functional LoRA pieces equal LoRALinear; the planted-ΔW toy behaves as Eckart–Young says."""
import pytest
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


def test_init_b_swaps_which_factor_is_random_and_still_starts_at_zero():
    problem = planted_problem(d=16, n=32)
    layer_a, losses_a = fit_lora(problem, 2, steps=1, lr=1e-3, init="A")
    layer_b, losses_b = fit_lora(problem, 2, steps=1, lr=1e-3, init="B")
    assert losses_a[0] == losses_b[0] == pytest.approx(loss_floor(problem, 0))  # B A = 0: both start at the base
    fresh = fit_lora(problem, 2, steps=0, init="B")[0]
    assert (fresh.lora_A == 0).all() and fresh.lora_B.abs().max() <= 2 ** -0.5 and fresh.lora_B.std() > 0.1  # fan-in r
    with pytest.raises(ValueError, match="'A'"):
        fit_lora(problem, 2, steps=1, init="C")


def test_sweep_init_writes_every_run_and_a_curve_per_width(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "sweep_init.py"
    spec = importlib.util.spec_from_file_location("sweep_init", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    record = script.main(["--widths", "8", "16", "--seeds", "0", "1", "--steps", "3", "--lr-log2", "-3", "-2",
                          "--out", str(tmp_path / "init.json")])
    assert set(record["runs"]) == {f"d={d}/init={i}/seed={s}" for d in (8, 16) for i in "AB" for s in (0, 1)}
    assert all(len(run["final"]) == 2 for run in record["runs"].values()) and record["settings"]["lrs"] == [0.125, 0.25]
    assert set(record["curves"]) == {f"d={d}/init={i}" for d in (8, 16) for i in "AB"}
