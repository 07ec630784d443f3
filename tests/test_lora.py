"""LoRA: the layer's contract, injection, save/load, and every bad input the course design lists."""
import json
import pickle

import pytest
import torch
import torch.nn as nn

from lora_scratch.gpt import GPT, GPTConfig
from lora_scratch.lora import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    LoRALinear,
    add_lora,
    base_fingerprint,
    load_adapter,
    lora_disabled,
    lora_layers,
    lora_state_dict,
    mark_only_lora_as_trainable,
    merge_lora,
    save_adapter,
    unmerge_lora,
)

SMALL = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=16)


def small_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(SMALL).eval()


def tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, SMALL.vocab_size, (3, 12), generator=torch.Generator().manual_seed(seed))


def randomize_b(model: nn.Module, seed: int = 2) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=gen) * 0.1)


def test_init_leaves_outputs_exactly_unchanged():
    model, x = small_gpt(), tokens()
    before = model(x)[0]
    add_lora(model, ["q_proj", "v_proj", "up_proj"], r=4, alpha=8)
    assert len(lora_layers(model)) == 3 * SMALL.n_layer
    assert torch.equal(model(x)[0], before)


def test_shapes_and_scaling():
    layer = LoRALinear(nn.Linear(10, 6), r=3, alpha=12)
    assert layer.lora_A.shape == (3, 10) and layer.lora_B.shape == (6, 3)
    assert layer.scaling == 4.0
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(layer.lora_A) > 0


def test_only_lora_params_get_gradients():
    model = small_gpt()
    add_lora(model, ["q_proj", "v_proj"], r=2, alpha=4)
    mark_only_lora_as_trainable(model)
    randomize_b(model)
    x = tokens()
    _, loss = model(x, x)
    loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad and all(".lora_A" in n or ".lora_B" in n for n in with_grad)
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n in with_grad)


def test_merge_matches_unmerged_and_unmerge_restores():
    model = small_gpt()
    add_lora(model, ["q_proj", "k_proj", "v_proj", "o_proj"], r=4, alpha=8)
    randomize_b(model)
    x = tokens()
    original = {n: l.base.weight.clone() for n, l in lora_layers(model).items()}
    unmerged = model(x)[0]
    merge_lora(model)
    assert all(layer.merged for layer in lora_layers(model).values())
    torch.testing.assert_close(model(x)[0], unmerged, rtol=1e-5, atol=1e-5)
    unmerge_lora(model)
    for name, layer in lora_layers(model).items():
        torch.testing.assert_close(layer.base.weight, original[name], rtol=0, atol=1e-6)
    torch.testing.assert_close(model(x)[0], unmerged, rtol=1e-5, atol=1e-5)


def test_merge_twice_and_unmerge_unmerged_raise():
    layer = LoRALinear(nn.Linear(4, 4), r=2).eval()
    with pytest.raises(RuntimeError, match="not merged"):
        layer.unmerge()
    layer.merge()
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()


def test_merge_only_in_eval_and_train_unmerges():
    layer = LoRALinear(nn.Linear(4, 4), r=2)
    nn.init.normal_(layer.lora_B)
    w0 = layer.base.weight.clone()
    with pytest.raises(RuntimeError, match="eval"):
        layer.merge()
    layer.eval().merge()
    assert not torch.allclose(layer.base.weight, w0)
    layer.train()
    assert not layer.merged
    torch.testing.assert_close(layer.base.weight, w0, rtol=0, atol=1e-6)


def test_disable_is_exact_and_unmerges_first():
    model, x = small_gpt(), tokens()
    base_out = model(x)[0]
    add_lora(model, ["q_proj", "v_proj"], r=2, alpha=4)
    randomize_b(model)
    assert not torch.allclose(model(x)[0], base_out)
    with lora_disabled(model):
        assert torch.equal(model(x)[0], base_out)
    merge_lora(model)
    with lora_disabled(model):
        assert not any(layer.merged for layer in lora_layers(model).values())
        torch.testing.assert_close(model(x)[0], base_out, rtol=1e-5, atol=1e-6)


def test_save_load_is_bit_exact_into_a_fresh_base(tmp_path):
    model = small_gpt()
    add_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
    randomize_b(model)
    save_adapter(model, tmp_path / "ad")
    fresh = load_adapter(small_gpt(), tmp_path / "ad")
    for key, value in lora_state_dict(model).items():
        assert torch.equal(lora_state_dict(fresh)[key], value)
    x = tokens()
    assert torch.equal(fresh(x)[0], model(x)[0])
    config = json.loads((tmp_path / "ad" / ADAPTER_CONFIG).read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8 and config["target_modules"] == ["q_proj", "v_proj"]
    assert config["base_fingerprint"] == base_fingerprint(model)
    assert not [p for p in (tmp_path / "ad").iterdir() if p.name.endswith(".tmp")]  # atomic writes


def test_load_swaps_adapters_in_place(tmp_path):
    a, b = small_gpt(), small_gpt()
    for model, seed in ((a, 3), (b, 4)):
        add_lora(model, ["q_proj"], r=2)
        randomize_b(model, seed)
    save_adapter(b, tmp_path / "b")
    load_adapter(a, tmp_path / "b")
    x = tokens()
    assert torch.equal(a(x)[0], b(x)[0])


# ---- bad input: each row of the course design's table ----

@pytest.mark.parametrize("kwargs, word", [
    ({"r": 0}, "r"), ({"r": -2}, "r"), ({"r": 2.5}, "r"), ({"r": True}, "r"),
    ({"alpha": 0}, "alpha"), ({"alpha": -1.0}, "alpha"),
    ({"dropout": 1.0}, "dropout"), ({"dropout": -0.1}, "dropout"),
])
def test_bad_hyperparameters_name_the_argument(kwargs, word):
    args = {"r": 4, "alpha": 8, "dropout": 0.0} | kwargs
    with pytest.raises(ValueError, match=rf"^{word} .*must"):
        LoRALinear(nn.Linear(4, 4), **args)
    with pytest.raises(ValueError, match=rf"^{word} .*must"):
        add_lora(small_gpt(), ["q_proj"], **args)


def test_unknown_or_partial_target_lists_module_names():
    with pytest.raises(ValueError, match="matches no module") as err:
        add_lora(small_gpt(), ["wq"])
    assert "q_proj" in str(err.value) and "up_proj" in str(err.value)
    with pytest.raises(ValueError, match="only part of: .*q_proj"):
        add_lora(small_gpt(), ["q_pro"])


def test_non_linear_target_names_module_and_type():
    with pytest.raises(TypeError, match=r"blocks\.0\.ln_1: it is a LayerNorm"):
        add_lora(small_gpt(), ["ln_1"])


def test_tied_head_is_refused():
    with pytest.raises(ValueError, match="tied to tok_emb.weight"):
        add_lora(small_gpt(), ["lm_head"])


def test_adding_twice_is_refused():
    model = add_lora(small_gpt(), ["q_proj"])
    with pytest.raises(ValueError, match="already has a LoRA adapter"):
        add_lora(model, ["q_proj"])


def test_load_into_other_rank_names_key_and_shapes(tmp_path):
    save_adapter(add_lora(small_gpt(), ["q_proj"], r=4), tmp_path / "r4")
    other = add_lora(small_gpt(), ["q_proj"], r=2)
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.q_proj\.lora_A.*\(4, 16\).*\(2, 16\)"):
        load_adapter(other, tmp_path / "r4")


def test_load_into_other_model_size_names_key_and_shapes(tmp_path):
    save_adapter(add_lora(small_gpt(), ["q_proj"], r=4), tmp_path / "ad")
    bigger = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32))
    with pytest.raises(ValueError, match="shape mismatch for blocks.0.attn.q_proj.lora_A"):
        load_adapter(bigger, tmp_path / "ad", allow_different_base=True)


def test_other_base_of_same_shape_is_refused_unless_allowed(tmp_path):
    model = add_lora(small_gpt(seed=0), ["q_proj"], r=2)
    randomize_b(model)
    save_adapter(model, tmp_path / "ad")
    with pytest.raises(ValueError, match="fingerprint"):
        load_adapter(small_gpt(seed=1), tmp_path / "ad")
    other = load_adapter(small_gpt(seed=1), tmp_path / "ad", allow_different_base=True)
    assert torch.equal(lora_state_dict(other)["blocks.0.attn.q_proj.lora_B"],
                       lora_state_dict(model)["blocks.0.attn.q_proj.lora_B"])


class Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('ran')",))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_adapter_file_holding_a_pickle_is_refused_unexecuted(tmp_path, monkeypatch, writer):
    monkeypatch.chdir(tmp_path)
    model = add_lora(small_gpt(), ["q_proj"], r=2)
    save_adapter(model, tmp_path / "ad")
    weights = tmp_path / "ad" / ADAPTER_WEIGHTS
    if writer == "pickle":
        weights.write_bytes(pickle.dumps(Boom()))
    else:
        torch.save({"x": Boom()}, weights)
    with pytest.raises(ValueError, match="refused and nothing in it was executed"):
        load_adapter(small_gpt(), tmp_path / "ad")
    assert not (tmp_path / "PWNED").exists()


def test_loading_into_merged_model_is_refused(tmp_path):
    model = add_lora(small_gpt(), ["q_proj"], r=2)
    save_adapter(model, tmp_path / "ad")
    merge_lora(model)
    with pytest.raises(RuntimeError, match="unmerge"):
        load_adapter(model, tmp_path / "ad")


def test_missing_adapter_folder_says_what_it_needs(tmp_path):
    with pytest.raises(FileNotFoundError, match=ADAPTER_CONFIG):
        load_adapter(small_gpt(), tmp_path / "nothing")


def test_second_add_lora_extends_targets_with_same_hparams(tmp_path):
    model = add_lora(small_gpt(), ["q_proj"], r=2, alpha=4)
    add_lora(model, ["v_proj"], r=2, alpha=4)
    assert model.lora_config["target_modules"] == ["q_proj", "v_proj"]
    save_adapter(model, tmp_path / "ad")
    assert len(lora_layers(load_adapter(small_gpt(), tmp_path / "ad"))) == 2 * SMALL.n_layer
    with pytest.raises(ValueError, match="already has LoRA layers with r=2"):
        add_lora(model, ["k_proj"], r=4, alpha=4)


def test_saved_files_get_normal_permissions(tmp_path):
    import os

    save_adapter(add_lora(small_gpt(), ["q_proj"], r=2), tmp_path / "ad")
    mask = os.umask(0)
    os.umask(mask)
    for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
        assert (tmp_path / "ad" / name).stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600


def test_a_bf16_merge_rounds_once_and_fp32_merges_are_unchanged():
    """B @ A and the sum are computed in fp32 and rounded to bf16 once (issue 11: it used to round twice)."""
    torch.manual_seed(0)
    layer = LoRALinear(torch.nn.Linear(64, 48, dtype=torch.bfloat16), r=8, alpha=16).eval()
    with torch.no_grad():
        layer.lora_B.normal_(std=0.05)
    W0 = layer.base.weight.detach().clone()
    once = (W0.float() + (layer.lora_B.float() @ layer.lora_A.float()) * layer.scaling).to(torch.bfloat16)
    twice = W0 + ((layer.lora_B @ layer.lora_A) * layer.scaling)  # a bf16 product, then a bf16 sum
    layer.merge()
    assert layer.base.weight.dtype == torch.bfloat16 and torch.equal(layer.base.weight, once)
    assert not torch.equal(once, twice)  # the difference is real at this size, so the test can fail
    layer.unmerge()
    back = (once.float() - (layer.lora_B.float() @ layer.lora_A.float()) * layer.scaling).to(torch.bfloat16)
    assert torch.equal(layer.base.weight, back)
    fp32 = LoRALinear(torch.nn.Linear(6, 4), r=2).eval()
    with torch.no_grad():
        fp32.lora_B.normal_()
    expected = fp32.base.weight.detach() + fp32.delta_weight()
    fp32.merge()
    assert torch.equal(fp32.base.weight, expected)  # fp32 merges: bit for bit what they were
