"""A LoRA model's state stays what it says: turning adapters off nests and gives exactly the base, the merged flag
travels with state_dict(), PiSSA cannot be applied twice, merged_linear knows DoRA, and add_lora, load_adapter and
merge_lora change a model completely or not at all."""
import pytest
import torch
import torch.nn as nn

import lora_scratch.lora as lora
from lora_scratch.gpt import GPT, GPTConfig
from lora_scratch.lora import (
    add_lora,
    load_adapter,
    lora_disabled,
    lora_layers,
    merge_lora,
    save_adapter,
    unmerge_lora,
)
from lora_scratch.serve import merged_linear
from lora_scratch.variants import to_dora, to_pissa

SMALL = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=16)
X = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))


def small_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(SMALL).eval()


def moved(model: GPT, seed: int = 3) -> GPT:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model


def adapted(seed: int = 3) -> GPT:
    return moved(add_lora(small_gpt(), ["q_proj", "v_proj", "up_proj"], r=2, alpha=4.0), seed)


def out(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(X)[0]


def snapshot(model: nn.Module) -> tuple:
    """Everything a failed call must leave as it was: which module sits where, every tensor, the flags, the config."""
    modules = {name: id(m) for name, m in model.named_modules()}
    tensors = {k: v.clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}
    flags = {n: (layer.merged, layer.disabled, layer.lora_alpha, layer.scaling, type(layer.lora_dropout))
             for n, layer in lora_layers(model).items()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    return modules, tensors, flags, grads, getattr(model, "lora_config", None)


def assert_unchanged(model: nn.Module, before: tuple) -> None:
    modules, tensors, flags, grads, config = snapshot(model)
    assert modules == before[0]
    assert tensors.keys() == before[1].keys() and all(torch.equal(tensors[k], before[1][k]) for k in tensors)
    assert flags == before[2] and grads == before[3] and config == before[4]


# ---- lora_disabled ----

def test_disabled_blocks_nest_and_restore_what_was_there_before():
    model = adapted()
    base, full = out(small_gpt()), out(model)
    first = next(iter(lora_layers(model).values()))
    with lora_disabled(model):
        with lora_disabled(model):
            assert torch.equal(out(model), base)
        assert torch.equal(out(model), base)  # the inner block must not switch the adapters back on
    assert torch.equal(out(model), full)
    first.set_disabled(True)  # turned off by hand before the block: it stays off after it
    partly = out(model)
    with lora_disabled(model):
        assert torch.equal(out(model), base)
    assert first.disabled and torch.equal(out(model), partly)


def test_disabling_a_pissa_model_is_refused_because_its_base_is_only_the_residual():
    model = moved(to_pissa(add_lora(small_gpt(), ["q_proj"], r=2, alpha=4.0)))
    before = snapshot(model)
    with pytest.raises(ValueError, match="PiSSA.*residual.*load_base"):
        with lora_disabled(model):
            pass
    with pytest.raises(ValueError, match="PiSSA"):
        next(iter(lora_layers(model).values())).set_disabled(True)
    assert_unchanged(model, before)


# ---- the merged flag is part of the state ----

def test_a_merged_state_dict_does_not_add_delta_w_twice():
    merged = adapted()
    expected = out(merged)
    merge_lora(merged)
    unmerged = adapted(seed=9)
    unmerged.load_state_dict(merged.state_dict())  # W0 + ΔW comes in, and so does merged=True
    assert all(layer.merged for layer in lora_layers(unmerged).values())
    torch.testing.assert_close(out(unmerged), expected, rtol=1e-5, atol=1e-5)
    unmerge_lora(unmerged)
    torch.testing.assert_close(out(unmerged), expected, rtol=1e-5, atol=1e-5)


def test_a_merged_dora_state_dict_keeps_what_unmerge_needs():
    model = moved(to_dora(add_lora(small_gpt(), ["q_proj"], r=2, alpha=4.0)))
    w0 = model.blocks[0].attn.q_proj.base.weight.clone()
    merge_lora(model)
    other = to_dora(add_lora(small_gpt(), ["q_proj"], r=2, alpha=4.0))
    other.load_state_dict(model.state_dict())
    assert torch.equal(out(other), out(model))
    unmerge_lora(other)
    assert torch.equal(other.blocks[0].attn.q_proj.base.weight, w0)  # DoRA unmerges exactly


# ---- PiSSA twice, merged_linear for DoRA ----

def test_pissa_twice_is_refused_and_changes_nothing():
    model = to_pissa(add_lora(small_gpt(), ["q_proj", "v_proj"], r=2, alpha=4.0))
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="already PiSSA-initialised"):
        to_pissa(model)
    assert_unchanged(model, before)


def test_merged_linear_of_a_dora_layer_computes_what_the_layer_computes():
    model = moved(to_dora(add_lora(small_gpt(), ["q_proj"], r=2, alpha=4.0)))
    layer = model.blocks[0].attn.q_proj
    x = torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(merged_linear(layer)(x), layer(x), rtol=1e-5, atol=1e-6)
    assert not layer.merged


# ---- all or nothing ----

def test_add_lora_refusing_a_later_target_leaves_the_model_untouched():
    model = small_gpt()
    before = snapshot(model)
    with pytest.raises(TypeError, match="ln_1"):
        add_lora(model, ["q_proj", "ln_1"], r=2)  # q_proj used to be wrapped before ln_1 was refused
    assert_unchanged(model, before)


def test_add_lora_failing_midway_puts_the_original_layers_back(monkeypatch):
    import lora_scratch.lora_layer as lora_layer

    model = small_gpt()
    before = snapshot(model)
    real, calls = lora_layer._set_module, []

    def third_fails(*args):
        calls.append(args[1])
        if len(calls) == 3:
            raise MemoryError("injected")
        real(*args)
    monkeypatch.setattr(lora_layer, "_set_module", third_fails)
    with pytest.raises(MemoryError):
        add_lora(model, ["q_proj", "v_proj"], r=2)
    assert_unchanged(model, before)


def test_load_adapter_refusing_a_file_leaves_the_model_untouched(tmp_path):
    save_adapter(adapted(), tmp_path)
    bigger = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    before = snapshot(bigger)
    with pytest.raises(ValueError, match="shape mismatch"):
        load_adapter(bigger, tmp_path, allow_different_base=True)  # used to add the LoRA layers, then refuse
    assert_unchanged(bigger, before)


@pytest.mark.parametrize("variant", ["lora", "dora", "pissa"])
@pytest.mark.parametrize("into", ["fresh", "swap"])
def test_load_adapter_failing_midway_puts_the_model_back(tmp_path, monkeypatch, variant, into):
    make_variant = {"lora": lambda m: m, "dora": to_dora, "pissa": to_pissa}[variant]
    save_adapter(moved(make_variant(add_lora(small_gpt(), ["q_proj", "v_proj", "up_proj"], r=2, alpha=4.0))), tmp_path)
    model = small_gpt() if into == "fresh" else load_adapter(small_gpt(), tmp_path)
    if into == "swap":
        moved(model, seed=11)
    before = snapshot(model)
    real = torch.Tensor.copy_

    def copy_then_fail(model, tensors):
        own = model.state_dict()
        with torch.no_grad():
            for key, value in list(tensors.items())[: len(tensors) // 2]:
                real(own[key], value)
        raise RuntimeError("injected midway through the copy")
    monkeypatch.setattr(lora, "_copy_values", copy_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        load_adapter(model, tmp_path)
    assert_unchanged(model, before)


def test_merge_lora_refused_by_one_layer_unmerges_none(monkeypatch):
    model = adapted()
    layers = list(lora_layers(model).values())
    layers[-1].set_disabled(True)  # merge() refuses a disabled layer: the others used to stay merged
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="disabled"):
        merge_lora(model)
    assert_unchanged(model, before)
    layers[-1].set_disabled(False)
    merge_lora(model)
    layers[-1].unmerge()  # unmerge_lora now finds its last layer not merged: it unmerges none
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="not merged"):
        unmerge_lora(model)
    assert_unchanged(model, before)
