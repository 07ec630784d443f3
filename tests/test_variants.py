"""lora_scratch.variants: each variant's contract (rsLoRA, LoRA+, DoRA, PiSSA) and the §7.2 grid."""
import math

import pytest
import torch
import torch.nn as nn

from lora_scratch import GPT, GPTConfig, add_lora, mark_only_lora_as_trainable
from lora_scratch.linalg import low_rank_approx, subspace_similarity
from lora_scratch.lora import LoRALinear, lora_layers
from lora_scratch.train import TrainConfig, train
from lora_scratch.variants import (
    DoRALinear,
    apply_variant,
    column_norm,
    delta_norms,
    loraplus_optimizer,
    loraplus_param_groups,
    pissa_factors,
    pissa_init_,
    rslora_scaling,
    subspace_grid,
    summarize_runs,
    to_dora,
    to_pissa,
    use_rslora,
)

TARGETS = ["q_proj", "v_proj"]


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=16)).eval()


def lora_gpt(r: int = 4, alpha: float = 8.0) -> GPT:
    model = add_lora(tiny_gpt(), TARGETS, r=r, alpha=alpha)
    mark_only_lora_as_trainable(model)
    return model


def tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(256, (2, 16), generator=torch.Generator().manual_seed(seed))


def nonzero_b(model: nn.Module) -> nn.Module:
    """Move B off zero, as training would, so the adapter changes the output."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)
    return model


# ---------------------------------------------------------------- rsLoRA


@pytest.mark.parametrize("alpha, r", [(8.0, 1), (8.0, 4), (16.0, 64), (3.0, 9)])
def test_rslora_scaling_is_alpha_over_sqrt_r(alpha, r):
    assert rslora_scaling(alpha, r) == pytest.approx(alpha / math.sqrt(r))
    assert rslora_scaling(alpha, r) * math.sqrt(r) == pytest.approx(alpha)


@pytest.mark.parametrize("r", [0, -2, 2.5, True])
def test_rslora_refuses_bad_rank(r):
    with pytest.raises(ValueError, match="r"):
        rslora_scaling(8.0, r)


def test_use_rslora_changes_every_layer_and_keeps_init_output():
    model, ref = lora_gpt(r=16, alpha=8.0), lora_gpt(r=16, alpha=8.0)
    use_rslora(model)
    assert {layer.scaling for layer in lora_layers(model).values()} == {8.0 / 4}  # sqrt(16) = 4
    assert model.lora_config["use_rslora"] is True
    assert torch.equal(model(tokens())[0], ref(tokens())[0])  # B = 0: still the base's output


# ---------------------------------------------------------------- LoRA+


def test_loraplus_groups_hold_exactly_a_and_b():
    model = lora_gpt()
    groups = loraplus_param_groups(model, lr=1e-3, ratio=16)
    layers = lora_layers(model).values()
    assert [id(p) for p in groups[0]["params"]] == [id(layer.lora_A) for layer in layers]
    assert [id(p) for p in groups[1]["params"]] == [id(layer.lora_B) for layer in layers]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == trainable
    assert (groups[0]["lr"], groups[1]["lr"]) == (1e-3, 16e-3)
    assert (groups[0]["lr_scale"], groups[1]["lr_scale"]) == (1.0, 16.0)


def test_loraplus_ratio_survives_the_schedule():
    model = lora_gpt()
    opt = loraplus_optimizer(model, lr=1e-3, ratio=20)
    cfg = TrainConfig(steps=4, batch_size=2, block_size=8, lr=1e-3, warmup=1, eval_every=0)
    train(model, torch.randint(256, (200,)), cfg, progress=False, optimizer=opt)
    a, b = opt.param_groups
    assert b["lr"] == pytest.approx(20 * a["lr"]) and a["lr"] < 1e-3  # decayed, ratio kept


def test_loraplus_needs_lora_layers_and_a_positive_ratio():
    with pytest.raises(ValueError, match="add_lora"):
        loraplus_param_groups(tiny_gpt(), 1e-3)
    with pytest.raises(ValueError, match="ratio"):
        loraplus_param_groups(lora_gpt(), 1e-3, ratio=0)


# ---------------------------------------------------------------- DoRA


def test_column_norm_is_one_norm_per_output_feature():
    W = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]])  # (out=2, in=3)
    assert torch.equal(column_norm(W), torch.tensor([5.0, 2.0]))


def test_dora_leaves_outputs_unchanged_at_init():
    model, ref = to_dora(lora_gpt()), lora_gpt()
    assert all(isinstance(m, DoRALinear) for m in lora_layers(model).values())
    torch.testing.assert_close(model(tokens())[0], ref(tokens())[0], atol=1e-5, rtol=1e-5)


def test_dora_keeps_a_and_b_and_trains_the_magnitude():
    plain = lora_gpt()
    A_before = {n: m.lora_A.detach().clone() for n, m in lora_layers(plain).items()}
    to_dora(plain)
    mark_only_lora_as_trainable(plain)
    for name, layer in lora_layers(plain).items():
        assert torch.equal(layer.lora_A, A_before[name])
        torch.testing.assert_close(layer.lora_magnitude, column_norm(layer.base.weight))
        assert layer.lora_magnitude.requires_grad and not layer.base.weight.requires_grad


def test_dora_forward_is_magnitude_times_unit_direction():
    torch.manual_seed(0)
    layer = DoRALinear(nn.Linear(6, 4), r=2, alpha=4.0)
    with torch.no_grad():
        layer.lora_B.normal_()
        layer.lora_magnitude.uniform_(0.5, 2.0)
    V = layer.base.weight + 2.0 * layer.lora_B @ layer.lora_A  # alpha / r = 2
    W = layer.lora_magnitude[:, None] * V / V.norm(dim=1, keepdim=True)
    x = torch.randn(3, 6)
    torch.testing.assert_close(layer(x), x @ W.T + layer.base.bias)
    torch.testing.assert_close(column_norm(layer.dora_weight()), layer.lora_magnitude)


def test_dora_norm_is_detached_in_the_backward():
    torch.manual_seed(0)
    layer = DoRALinear(nn.Linear(5, 3), r=2, alpha=2.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 5)
    layer(x).sum().backward()
    got = layer.lora_B.grad.clone()
    # the same function with the norm as a fixed constant gives the same gradient...
    B = layer.lora_B.detach().clone().requires_grad_(True)
    V = layer.base.weight + B @ layer.lora_A
    const = V.detach().norm(dim=1, keepdim=True)
    (x @ (layer.lora_magnitude.detach()[:, None] * V / const).T).sum().backward()
    torch.testing.assert_close(got, B.grad)
    # ...and differs from the gradient through the norm (so the test can fail)
    B2 = layer.lora_B.detach().clone().requires_grad_(True)
    V2 = layer.base.weight + B2 @ layer.lora_A
    (x @ (layer.lora_magnitude.detach()[:, None] * V2 / V2.norm(dim=1, keepdim=True)).T).sum().backward()
    assert not torch.allclose(got, B2.grad)


def test_dora_merge_equals_its_forward_and_unmerge_restores():
    model = nonzero_b(to_dora(lora_gpt())).eval()
    before = {n: m.base.weight.detach().clone() for n, m in lora_layers(model).items()}
    unmerged = model(tokens())[0]
    for layer in lora_layers(model).values():
        layer.merge()
    torch.testing.assert_close(model(tokens())[0], unmerged, atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="already merged"):
        next(iter(lora_layers(model).values())).merge()
    model.train()  # training unmerges (the LoRALinear contract)
    for name, layer in lora_layers(model).items():
        assert not layer.merged and torch.equal(layer.base.weight, before[name])


def test_dora_forward_and_gradients_equal_the_unfactored_weight_without_dropout():
    """The factored forward (base + (g - 1) W0 x + g s B A x) is F.linear(x, W') with the norm detached: same
    outputs, same gradients for A, B and m, on a layer with a bias."""
    torch.manual_seed(0)
    layer = DoRALinear(nn.Linear(7, 5), r=3, alpha=6.0).train()
    with torch.no_grad():
        layer.lora_B.normal_()
        layer.lora_magnitude.uniform_(0.5, 2.0)
    x = torch.randn(2, 4, 7)
    params = (layer.lora_A, layer.lora_B, layer.lora_magnitude)
    got = layer(x)
    grads = torch.autograd.grad(got.pow(2).sum(), params)
    ref = torch.nn.functional.linear(x, layer.dora_weight(), layer.base.bias)
    ref_grads = torch.autograd.grad(ref.pow(2).sum(), params)
    torch.testing.assert_close(got, ref)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


def test_dora_dropout_leaves_the_frozen_path_undropped():
    """As in the authors' code and PEFT: base(x) on the whole input, dropout only where the adapter reads x."""
    torch.manual_seed(0)
    layer = DoRALinear(nn.Linear(8, 6), r=2, alpha=4.0, dropout=0.5).train()
    x = torch.randn(4, 8)
    torch.testing.assert_close(layer(x), layer.base(x), rtol=0, atol=1e-6)  # B = 0, g = 1: exactly the base
    with torch.no_grad():
        layer.lora_B.normal_()
        layer.lora_magnitude.mul_(1.3)
    torch.manual_seed(1)
    got = layer(x)
    torch.manual_seed(1)
    x_d = layer.lora_dropout(x)  # the same mask
    g = layer.row_scale().detach()
    W0 = layer.base.weight
    expected = layer.base(x) + (g - 1) * (x_d @ W0.T) + g * layer.scaling * (x_d @ layer.lora_A.T @ layer.lora_B.T)
    torch.testing.assert_close(got, expected)
    dropped_everywhere = torch.nn.functional.linear(x_d, layer.dora_weight(), layer.base.bias)  # the old forward
    assert not torch.allclose(got, dropped_everywhere)


def test_dora_backward_forms_no_weight_sized_gradient():
    """The old forward, F.linear(x, W'), made autograd compute dL/dW' (out x in), as full fine-tuning does; the
    factored one costs LoRA's backward plus O(tokens x out). Counted in FLOPs, so it holds on any machine."""
    from torch.utils.flop_counter import FlopCounterMode

    def backward_flops(layer, weight_grad=False):
        layer.base.weight.requires_grad_(weight_grad)
        out = layer(torch.randn(4, 512))
        with FlopCounterMode(display=False) as counter:
            out.sum().backward()
        return counter.get_total_flops()

    torch.manual_seed(0)
    base = nn.Linear(512, 512)
    lora = LoRALinear(base, r=4, alpha=8.0).train()
    dora = DoRALinear(base, r=4, alpha=8.0).train()
    full = backward_flops(LoRALinear(nn.Linear(512, 512), r=4, alpha=8.0).train(), weight_grad=True)
    assert backward_flops(dora) == backward_flops(lora)  # the elementwise g terms are not GEMMs
    assert full - backward_flops(lora) == 2 * 4 * 512 * 512  # the weight gradient's GEMM: 2 · tokens · out · in


def test_dora_merge_needs_eval_mode():
    layer = DoRALinear(nn.Linear(4, 4), r=1).train()
    with pytest.raises(RuntimeError, match="eval"):
        layer.merge()


# ---------------------------------------------------------------- PiSSA


def test_pissa_factors_are_the_top_r_svd_split_by_sqrt():
    torch.manual_seed(0)
    W = torch.randn(7, 5)
    A, B = pissa_factors(W, r=2, scaling=4.0)
    assert A.shape == (2, 5) and B.shape == (7, 2)
    torch.testing.assert_close(4.0 * B @ A, low_rank_approx(W, 2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(B.norm(dim=0), A.norm(dim=1))  # sqrt(S / s) on both sides
    with pytest.raises(ValueError, match="r must be"):
        pissa_factors(W, r=6)


def test_pissa_leaves_outputs_unchanged_and_freezes_the_residual():
    model, ref = to_pissa(lora_gpt()), lora_gpt()
    torch.testing.assert_close(model(tokens())[0], ref(tokens())[0], atol=1e-4, rtol=1e-4)
    ref_layers = lora_layers(ref)
    for name, layer in lora_layers(model).items():
        W = ref_layers[name].base.weight
        torch.testing.assert_close(layer.base.weight, W - low_rank_approx(W, layer.r), atol=1e-5, rtol=1e-5)
        assert not layer.base.weight.requires_grad and layer.lora_B.abs().sum() > 0


def test_pissa_init_works_on_a_single_layer():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(8, 6), r=3, alpha=6.0)
    x = torch.randn(2, 8)
    before = layer(x)
    pissa_init_(layer)
    torch.testing.assert_close(layer(x), before, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- dispatch, norms, the §7.2 grid


def test_apply_variant_dispatches_and_refuses_unknown_names():
    assert isinstance(next(iter(lora_layers(apply_variant(lora_gpt(), "dora")).values())), DoRALinear)
    assert next(iter(lora_layers(apply_variant(lora_gpt(r=4), "rslora")).values())).scaling == 4.0
    assert next(iter(lora_layers(apply_variant(lora_gpt(r=4), "lora")).values())).scaling == 2.0
    with pytest.raises(ValueError, match="variant must be one of"):
        apply_variant(lora_gpt(), "vera")
    with pytest.raises(ValueError, match="add_lora"):
        to_dora(tiny_gpt())


def test_delta_norms_are_zero_at_init_and_positive_after():
    model = lora_gpt()
    assert set(delta_norms(model).values()) == {0.0}
    assert min(delta_norms(nonzero_b(model)).values()) > 0


def test_subspace_grid_matches_subspace_similarity():
    g = torch.Generator().manual_seed(0)
    A1, A2 = torch.randn(4, 40, generator=g), torch.randn(9, 40, generator=g)
    grid = subspace_grid(A1, A2, 4, 9)
    assert grid.shape == (4, 9)
    for i, j in [(1, 1), (2, 5), (4, 9), (3, 1)]:
        assert grid[i - 1, j - 1].item() == pytest.approx(subspace_similarity(A1, A2, i, j), abs=1e-12)
    assert subspace_grid(A1, A1, 4, 4).diagonal().tolist() == pytest.approx([1.0] * 4)


def _run(folio, modern, lr=1e-3):
    return {"after": {"folio_val": folio, "modern_val": modern}, "config": {"lr": lr}, "trainable_params": 10}


def test_summarize_runs_groups_seeds_and_takes_mean_and_std():
    runs = {"lora/lr=0.001/seed=0": _run(1.0, 2.0), "lora/lr=0.001/seed=1": _run(3.0, 2.0),
            "dora/lr=0.001/seed=0": _run(5.0, 1.0)}
    table = summarize_runs(runs)
    assert table["lora/lr=0.001"]["folio"] == 2.0 and table["lora/lr=0.001"]["folio_std"] == pytest.approx(2 ** 0.5)
    assert table["lora/lr=0.001"]["modern_std"] == 0.0 and table["lora/lr=0.001"]["seeds"] == 2
    assert table["dora/lr=0.001"]["folio_std"] == 0.0 and table["dora/lr=0.001"]["seeds"] == 1



def test_a_dora_adapter_saves_its_magnitude_and_loads_into_a_fresh_base(tmp_path):
    import pytest

    from lora_scratch.gpt import GPT, GPTConfig
    from lora_scratch.lora import add_lora, load_adapter, save_adapter
    from lora_scratch.variants import DoRALinear, to_dora

    def fresh():
        torch.manual_seed(0)
        return GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=8)).eval()

    model = to_dora(add_lora(fresh(), ["q_proj", "v_proj"], r=2, alpha=4.0))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.add_(0.1 * torch.randn_like(p))  # as if trained: B and the magnitudes moved
    save_adapter(model, tmp_path)
    x = torch.randint(0, 32, (1, 8))
    again = load_adapter(fresh(), tmp_path)
    assert isinstance(again.blocks[0].attn.q_proj, DoRALinear)
    assert torch.equal(again(x)[0], model(x)[0])  # the magnitudes came back too
    plain = add_lora(fresh(), ["q_proj", "v_proj"], r=2, alpha=4.0)
    with pytest.raises(ValueError, match="DoRA adapter"):
        load_adapter(plain, tmp_path)  # a swap into plain LoRA layers: clear refusal, not silent loss
