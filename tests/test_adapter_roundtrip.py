"""Save -> load into a fresh base gives back the saved model's logits, for every variant and dtype, or the load is
refused with an error that says what to do: never a silent difference.

The property tests draw targets (63 non-empty subsets of the six projections) x rank (1..8) x variant (plain,
rsLoRA, DoRA, PiSSA) x dtype (fp32, bf16) = 4,032 discrete configurations, times a continuous alpha.
Tolerance: none. Every variant is compared bit for bit: the reload repeats the very float operations of the
save on the very same inputs (rsLoRA's alpha / sqrt(r); DoRA's magnitudes come from the file; PiSSA's residual
W - s B0 A0 is recomputed from the saved initial factors with the same expression), so any difference is a bug.
"""
import ast
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import lora_scratch
from lora_scratch.gpt import GPT, GPTConfig
from lora_scratch.lora import add_lora, load_adapter, lora_layers, read_adapter_config, save_adapter
from lora_scratch.variants import DoRALinear, apply_variant, to_dora, to_pissa, use_rslora

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj")
VARIANTS = {"plain": "lora", "rslora": "rslora", "dora": "dora", "pissa": "pissa"}
EXAMPLES = 100  # per property, plus 8 explicit variant x dtype examples: ~10 s for both on 2 idle cores
X = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))

configs = st.fixed_dictionaries({
    "targets": st.integers(1, 63).map(lambda mask: [t for i, t in enumerate(TARGETS) if mask >> i & 1]),
    "r": st.integers(1, 8),
    "alpha": st.floats(0.05, 64.0, allow_nan=False, allow_infinity=False),  # mostly non-integers
    "variant": st.sampled_from(sorted(VARIANTS)),
    "dtype": st.sampled_from(["float32", "bfloat16"]),
})
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def every_variant_and_dtype(test):
    """Whatever the random draws, each variant meets each dtype at least once (with two targets, r = 3, alpha 2.5)."""
    for variant in sorted(VARIANTS):
        for dtype in ("float32", "bfloat16"):
            test = example(cfg={"targets": ["q_proj", "up_proj"], "r": 3, "alpha": 2.5, "variant": variant,
                                "dtype": dtype})(test)
    return test


def small_gpt(dtype: torch.dtype = torch.float32, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=16)).to(dtype).eval()


def adapted(cfg: dict, alpha: float | None = None, perturb_seed: int | None = 7) -> GPT:
    """A small GPT with the drawn adapter, moved away from its init (as training would) unless perturb_seed
    is None."""
    dtype = getattr(torch, cfg["dtype"])
    model = add_lora(small_gpt(dtype), cfg["targets"], r=cfg["r"], alpha=alpha or cfg["alpha"])
    apply_variant(model, VARIANTS[cfg["variant"]])
    if perturb_seed is not None:
        g = torch.Generator().manual_seed(perturb_seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if ".lora_" in name:  # A, B and DoRA's magnitude
                    p.add_((0.2 * torch.randn(p.shape, generator=g)).to(dtype))
    return model


def logits(model: GPT) -> torch.Tensor:
    with torch.no_grad():
        return model(X)[0]


@PROPERTY
@every_variant_and_dtype
@given(cfg=configs)
def test_save_then_load_into_a_fresh_base_gives_back_the_logits_bit_for_bit(cfg):
    model = adapted(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        save_adapter(model, tmp)
        again = load_adapter(small_gpt(getattr(torch, cfg["dtype"])), tmp)
        assert read_adapter_config(tmp)["variant"] == VARIANTS[cfg["variant"]]
    assert torch.equal(logits(again), logits(model))
    assert again.lora_config == model.lora_config
    assert all(type(a) is type(b) and a.scaling == b.scaling
               for a, b in zip(lora_layers(again).values(), lora_layers(model).values()))


@PROPERTY
@given(cfg=configs, other_alpha=st.floats(0.05, 64.0, allow_nan=False, allow_infinity=False))
def test_every_other_load_reproduces_the_logits_or_is_refused_clearly(cfg, other_alpha):
    """Into LoRA layers of another alpha (a swap), a base of the other dtype, another base of the same shape."""
    model = adapted(cfg)
    dtype = getattr(torch, cfg["dtype"])
    with tempfile.TemporaryDirectory() as tmp:
        save_adapter(model, tmp)
        swapped = adapted(cfg, alpha=other_alpha, perturb_seed=None)
        try:
            load_adapter(swapped, tmp)
            assert torch.equal(logits(swapped), logits(model)), "a swap must reproduce the saved model"
            assert [layer.lora_alpha for layer in lora_layers(swapped).values()] == [cfg["alpha"]] * len(
                lora_layers(swapped)) and swapped.lora_config["lora_alpha"] == cfg["alpha"]
        except ValueError as e:  # only PiSSA, whose residual depends on alpha, may refuse a swap
            assert cfg["variant"] == "pissa" and other_alpha != cfg["alpha"], e
            assert "load_adapter(load_base(), path)" in str(e)
        other_dtype = torch.bfloat16 if dtype == torch.float32 else torch.float32
        with pytest.raises(ValueError, match=f"saved from a {cfg['dtype']} model.*then convert"):
            load_adapter(small_gpt(other_dtype), tmp)
        with pytest.raises(ValueError, match="fingerprint"):
            load_adapter(small_gpt(dtype, seed=1), tmp)


# ---- item by item: the variants come back as what they were ----

def plain_lora(model: GPT, r: int = 4, alpha: float = 8.0) -> GPT:
    return add_lora(model, ["q_proj", "v_proj"], r=r, alpha=alpha)


def moved(model: GPT) -> GPT:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model


def test_an_rslora_adapter_reloads_with_alpha_over_sqrt_r(tmp_path):
    model = moved(use_rslora(plain_lora(small_gpt())))
    save_adapter(model, tmp_path)
    again = load_adapter(small_gpt(), tmp_path)
    assert next(iter(lora_layers(again).values())).scaling == 8.0 / 2  # alpha / sqrt(4), not alpha / r = 2
    assert torch.equal(logits(again), logits(model)) and again.lora_config["use_rslora"] is True


def test_a_pissa_adapter_rebuilds_its_residual_base(tmp_path):
    model = moved(to_pissa(plain_lora(small_gpt())))
    save_adapter(model, tmp_path)
    assert torch.equal(logits(load_adapter(small_gpt(), tmp_path)), logits(model))


def test_a_pissa_adapter_is_refused_on_other_adapted_weights(tmp_path):
    """The base fingerprint skips the adapted matrices, which PiSSA turns into residuals: they are checked too."""
    save_adapter(moved(to_pissa(plain_lora(small_gpt()))), tmp_path)
    other = small_gpt()
    with torch.no_grad():
        other.blocks[0].attn.q_proj.weight.mul_(1.01)
    with pytest.raises(ValueError, match="PiSSA adapter was made from adapted weights with fingerprint"):
        load_adapter(other, tmp_path)
    assert not lora_layers(other)  # refused before anything changed


def test_a_swap_takes_the_files_alpha_and_the_config_says_so(tmp_path):
    save_adapter(moved(plain_lora(small_gpt(), alpha=2.0)), tmp_path)
    server = plain_lora(small_gpt(), alpha=8.0)
    load_adapter(server, tmp_path)
    assert all(layer.lora_alpha == 2.0 and layer.scaling == 0.5 for layer in lora_layers(server).values())
    assert server.lora_config["lora_alpha"] == 2.0
    assert torch.equal(logits(server), logits(load_adapter(small_gpt(), tmp_path)))


def test_a_swap_into_another_variant_or_other_pissa_factors_is_refused(tmp_path):
    save_adapter(moved(to_dora(plain_lora(small_gpt()))), tmp_path / "dora")
    with pytest.raises(ValueError, match="this is a DoRA adapter, but the model's LoRA layers are plain LoRA"):
        load_adapter(plain_lora(small_gpt()), tmp_path / "dora")
    save_adapter(moved(to_pissa(plain_lora(small_gpt()))), tmp_path / "pissa")
    other = to_pissa(plain_lora(small_gpt(), alpha=4.0))  # other alpha: another residual
    with pytest.raises(ValueError, match="other initial factors.*load_adapter\\(load_base\\(\\), path\\)"):
        load_adapter(other, tmp_path / "pissa")


def test_a_dora_adapter_rebuilds_dora_layers(tmp_path):
    model = moved(to_dora(plain_lora(small_gpt())))
    save_adapter(model, tmp_path)
    again = load_adapter(small_gpt(), tmp_path)
    assert all(isinstance(layer, DoRALinear) for layer in lora_layers(again).values())
    assert torch.equal(logits(again), logits(model)) and read_adapter_config(tmp_path)["variant"] == "dora"


def test_a_hand_set_scaling_is_refused_at_save(tmp_path):
    model = plain_lora(small_gpt())
    next(iter(lora_layers(model).values())).scaling = 3.0
    with pytest.raises(ValueError, match="set by hand"):
        save_adapter(model, tmp_path)


# ---- bf16 (the fingerprint used to call .numpy(), which bf16 cannot do) ----

def test_a_bf16_model_saves_and_loads_its_adapter_bit_for_bit(tmp_path):
    model = moved(plain_lora(small_gpt(torch.bfloat16)))
    save_adapter(model, tmp_path)
    assert read_adapter_config(tmp_path)["dtype"] == "bfloat16"
    assert torch.equal(logits(load_adapter(small_gpt(torch.bfloat16), tmp_path)), logits(model))


def test_an_fp32_adapter_loads_into_the_fp32_base_and_then_converts(tmp_path):
    save_adapter(moved(plain_lora(small_gpt())), tmp_path)
    with pytest.raises(ValueError, match="saved from a float32 model and this one is bfloat16"):
        load_adapter(small_gpt(torch.bfloat16), tmp_path)
    model = load_adapter(small_gpt(), tmp_path).to(torch.bfloat16)  # the fix the message names
    assert next(iter(lora_layers(model).values())).lora_A.dtype == torch.bfloat16


# ---- the import circle is gone: the core never imports the variants ----

def test_the_core_modules_do_not_import_the_variants():
    package = Path(lora_scratch.__file__).parent
    for module in ("lora.py", "lora_layer.py", "adapter_format.py", "files.py"):
        tree = ast.parse((package / module).read_text())
        imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not any("variants" in name for name in imported), module


def test_the_variant_registry_is_filled_on_import():
    from lora_scratch.adapter_format import REGISTRY as registered

    assert list(registered) == ["rslora", "dora", "pissa"]  # the order load_adapter applies them in
