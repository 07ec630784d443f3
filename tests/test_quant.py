"""quant.py: absmax int8/int4, the NF4 table, packing, double quantization, bits per parameter, QLoRA layers."""
import math

import pytest
import torch
import torch.nn as nn

from lora_scratch import LoRALinear, load_adapter, lora_state_dict, mark_only_lora_as_trainable, save_adapter
from lora_scratch.gpt import GPT, GPTConfig
from lora_scratch.quant import (
    NF4_LEVELS,
    NF4_OFFSET,
    NF4Linear,
    absmax_dequantize,
    absmax_quantize,
    absmax_roundtrip,
    add_qlora,
    as_blocks,
    bits_per_param,
    dequantize_scales,
    eq4_levels,
    nearest_level,
    nf4_levels,
    nf4_roundtrip,
    nf4_storage_bytes,
    normal_quantile,
    pack_nibbles,
    qlora_linear,
    quantize_nf4,
    quantize_scales,
    relative_error,
    unpack_nibbles,
)

# The published reference: the NF4 table of QLoRA's reference implementation, bitsandbytes,
# bitsandbytes/functional.py, get_4bit_type("nf4") (bitsandbytes-foundation/bitsandbytes,
# commit 01327aa0119fa503ea16322dd72f69f202e4502e); built there by create_normal_map(offset=0.9677083).
BITSANDBYTES_NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: on a busy 2-core machine a second intra-op thread mostly waits (30 ms per op measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def weights(*shape, seed=0, std=0.02):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * std


# ---------------------------------------------------------------- the normal quantile and the NF4 table

def test_normal_quantile_inverts_the_normal_cdf():
    p = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    cdf = 0.5 * (1 + torch.erf(normal_quantile(p) / math.sqrt(2)))
    assert torch.allclose(cdf, p, atol=1e-12)
    assert normal_quantile(0.5).item() == 0.0
    assert abs(normal_quantile(0.975).item() - 1.959963984540054) < 1e-9  # the textbook 1.96


def test_nf4_levels_equal_the_bitsandbytes_table_to_1e_6():
    levels = nf4_levels()
    assert levels.shape == (16,) and levels.dtype == torch.float32
    assert (levels - torch.tensor(BITSANDBYTES_NF4)).abs().max().item() < 1e-6
    assert torch.equal(NF4_LEVELS, levels)


def test_nf4_has_exact_zero_eight_positive_seven_negative():
    levels = nf4_levels()
    assert (levels == 0).sum() == 1 and (levels > 0).sum() == 8 and (levels < 0).sum() == 7
    assert levels.min() == -1.0 and levels.max() == 1.0 and bool((levels.diff() > 0).all())


def test_offset_is_the_mean_of_the_two_half_bin_readings():
    assert abs(NF4_OFFSET - ((1 - 1 / 30) + (1 - 1 / 32)) / 2) < 1e-7
    ref = torch.tensor(BITSANDBYTES_NF4)
    for offset in (1 - 1 / 30, 1 - 1 / 32):  # either reading alone misses the reference by more than 1e-3
        assert (nf4_levels(offset) - ref).abs().max().item() > 1e-3


def test_eq4_taken_literally_is_infinite_at_one_end():
    q = eq4_levels()
    assert q.shape == (16,) and q[0].item() == -math.inf and torch.isfinite(q[1:]).all()
    assert q[8].item() == 0.0 and torch.allclose(q[1:8], -q[9:].flip(0))  # symmetric apart from q_0


def test_nearest_level_picks_the_closest_value():
    x = torch.linspace(-1, 1, 1001)
    brute = (x[:, None] - NF4_LEVELS[None]).abs().argmin(dim=1)
    assert torch.equal(nearest_level(x).long(), brute)


# ---------------------------------------------------------------- absmax int8 / int4

@pytest.mark.parametrize("bits", [8, 4])
def test_absmax_error_is_at_most_half_a_step(bits):
    x = weights(32, 64, seed=bits)
    codes, absmax = absmax_quantize(x, bits)
    qmax = 2 ** (bits - 1) - 1
    assert codes.dtype == torch.int8 and codes.shape == x.shape and absmax.shape == (32, 1)
    assert codes.abs().max().item() == qmax  # each row's largest entry lands on ±qmax
    err = (absmax_dequantize(codes, absmax, bits) - x).abs()
    assert bool((err <= absmax / (2 * qmax) * (1 + 1e-5)).all())


def test_absmax_keeps_an_all_zero_row_at_zero():
    x = torch.zeros(2, 8)
    x[1] = torch.arange(8.0)
    codes, absmax = absmax_quantize(x, 8)
    assert torch.equal(absmax_dequantize(codes, absmax)[0], torch.zeros(8))


def test_blocks_contain_an_outlier():
    x = weights(64 * 64, seed=3)
    x[5] = 1.0  # one outlier, 50 standard deviations out
    whole, blocked = absmax_roundtrip(x, 4), absmax_roundtrip(x, 4, block=64)
    assert (whole[64:] == 0).float().mean() > 0.99  # one scale for all: nearly everything rounds to zero
    assert relative_error(x[64:], blocked[64:]) < 0.2 < relative_error(x[64:], whole[64:])


# ---------------------------------------------------------------- packing

def test_pack_unpack_round_trip_and_order():
    codes = torch.randint(0, 16, (1000,), generator=torch.Generator().manual_seed(1)).to(torch.uint8)
    packed = pack_nibbles(codes)
    assert packed.dtype == torch.uint8 and packed.shape == (500,)
    assert torch.equal(unpack_nibbles(packed), codes)
    assert pack_nibbles(torch.tensor([1, 2], dtype=torch.uint8)).item() == 0x12  # first code in the high nibble


def test_pack_refuses_bad_codes():
    with pytest.raises(ValueError, match="even number"):
        pack_nibbles(torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="0..15"):
        pack_nibbles(torch.tensor([3, 16], dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        pack_nibbles(torch.tensor([3, 1]))


# ---------------------------------------------------------------- NF4 round trip, double quantization, storage

def test_nf4_round_trip_error_bound_and_exact_zero():
    w = weights(160, 160, seed=4)
    w[0, :64] = 0.0  # an all-zero block
    w[3, 7] = 0.0
    for dq in (False, True):
        w_hat = nf4_roundtrip(w, double_quant=dq)
        assert w_hat.shape == w.shape and w_hat.dtype == torch.float32
        assert w_hat[3, 7].item() == 0.0 and bool((w_hat[0, :64] == 0).all())  # zero is exactly representable
    absmax = as_blocks(w, 64).abs().amax(1, keepdim=True)
    half_gap = NF4_LEVELS.diff().max() / 2
    err = as_blocks(w - nf4_roundtrip(w, double_quant=False), 64).abs()
    assert bool((err <= absmax * half_gap * (1 + 1e-5)).all())


def test_double_quantized_scales_are_close():
    scales = weights(1000, seed=5).abs() + 0.01
    codes, absmax, offset = quantize_scales(scales, 256)
    assert codes.dtype == torch.int8 and codes.shape == (1000,) and absmax.shape == (4,) and offset.shape == (1,)
    back = dequantize_scales(codes, absmax, offset, 256)
    step = absmax.repeat_interleave(256)[:1000] / 127
    assert bool(((back - scales).abs() <= step / 2 + 1e-7).all())


def test_double_quantization_barely_changes_the_error():
    w = weights(640, 160, seed=6)
    plain, dq = relative_error(w, nf4_roundtrip(w, double_quant=False)), relative_error(w, nf4_roundtrip(w))
    assert abs(dq - plain) < 0.01 * plain


def test_bits_per_param_measured_from_the_stored_tensors():
    w = weights(160, 160, seed=7)  # 25,600 weights: 400 blocks of 64, 2 blocks of scales (the last partial)
    plain, dq = quantize_nf4(w, double_quant=False), quantize_nf4(w)
    assert bits_per_param(plain.tensors(), w.numel()) == 4.5  # 4 + 32/64
    assert bits_per_param(dq.tensors(), w.numel()) == 4 + 8 / 64 + (2 * 32 + 32) / 25600
    assert dq.tensors()["packed"].dtype == torch.uint8 and dq.tensors()["scales"].dtype == torch.int8
    big = weights(64 * 256 * 16, seed=8)  # whole blocks of scales, many of them: close to the paper's 4.127
    assert abs(bits_per_param(quantize_nf4(big).tensors(), big.numel()) - 4.127) < 1e-3


def test_nf4_beats_int4_on_gaussian_weights():
    w = weights(640, 160, seed=9)
    assert relative_error(w, nf4_roundtrip(w, double_quant=False)) < relative_error(w, absmax_roundtrip(w, 4, 64))


@pytest.mark.parametrize("call, match", [
    (lambda: quantize_nf4(weights(10, 10)), "does not divide the 100 numbers"),
    (lambda: quantize_nf4(weights(64, 2), block=63), "even integer"),
    (lambda: quantize_nf4(torch.ones(64, dtype=torch.int64)), "floating-point"),
    (lambda: quantize_nf4(torch.full((64,), math.nan)), "inf or nan"),
    (lambda: absmax_quantize(weights(4, 4), bits=9), "bits must be an integer from 2 to 8"),
    (lambda: nf4_levels(0.3), "offset"),
])
def test_bad_input_errors_say_what_to_do(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_block_error_lists_sizes_that_fit():
    with pytest.raises(ValueError, match=r"Block sizes that fit: \[16, 32\]"):
        quantize_nf4(weights(96 * 3))


# ---------------------------------------------------------------- QLoRA layers

def qlora_and_reference(seed=10):
    torch.manual_seed(seed)
    linear = nn.Linear(128, 64)
    q = LoRALinear(NF4Linear.from_linear(linear), r=4, alpha=8)
    ref_base = nn.Linear(128, 64)
    with torch.no_grad():
        ref_base.weight.copy_(q.base.weight)
        ref_base.bias.copy_(linear.bias)
    ref = LoRALinear(ref_base, r=4, alpha=8)
    with torch.no_grad():
        for layer in (q, ref):
            layer.lora_A.copy_(torch.randn(4, 128, generator=torch.Generator().manual_seed(1)))
            layer.lora_B.copy_(torch.randn(64, 4, generator=torch.Generator().manual_seed(2)))
    return linear, q, ref


def test_qlora_forward_equals_lora_over_the_dequantized_weight():
    linear, q, ref = qlora_and_reference()
    x = torch.randn(3, 5, 128)
    assert torch.allclose(q(x), ref(x), atol=1e-6)
    assert q.base.packed.numel() == 128 * 64 // 2 and not any(isinstance(p, nn.Parameter) and p.numel() == 128 * 64
                                                              for p in q.parameters())


def test_gradients_reach_only_a_and_b():
    _, q, _ = qlora_and_reference()
    q(torch.randn(4, 128)).pow(2).sum().backward()
    with_grad = sorted(n for n, p in q.named_parameters() if p.grad is not None)
    assert with_grad == ["lora_A", "lora_B"]
    assert sorted(n for n, p in q.named_parameters() if p.requires_grad) == ["lora_A", "lora_B"]


def test_qlora_linear_wraps_an_nf4_copy():
    linear = nn.Linear(128, 64)
    layer = qlora_linear(linear, r=2, alpha=4)
    assert isinstance(layer, LoRALinear) and isinstance(layer.base, NF4Linear) and layer.scaling == 2
    assert relative_error(linear.weight.detach(), layer.base.weight) < 0.15  # the 4-bit copy of the same weight


def test_merging_into_nf4_is_refused_with_a_reason():
    _, q, _ = qlora_and_reference()
    q.eval()
    with pytest.raises(RuntimeError, match="re-quantize"):
        q.merge()
    assert not q.merged


def tiny_gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=64))


def test_add_qlora_keeps_lora_names_and_adapter_files(tmp_path):
    model = add_qlora(tiny_gpt(), ["q_proj", "up_proj"], r=2, alpha=4)
    mark_only_lora_as_trainable(model)
    assert isinstance(model.blocks[0].attn.q_proj.base, NF4Linear)
    assert isinstance(model.blocks[0].attn.k_proj, nn.Linear) and not isinstance(model.blocks[0].attn.k_proj, NF4Linear)
    keys = sorted(lora_state_dict(model))
    assert keys[0] == "blocks.0.attn.q_proj.lora_A" and len(keys) == 8
    assert nf4_storage_bytes(model) == sum(m.base.storage_bytes() for m in (model.blocks[0].attn.q_proj,
                                           model.blocks[1].attn.q_proj, model.blocks[0].mlp.up_proj,
                                           model.blocks[1].mlp.up_proj))
    with torch.no_grad():
        model.blocks[0].attn.q_proj.lora_B.fill_(0.5)
    save_adapter(model, tmp_path / "a")
    other = load_adapter(add_qlora(tiny_gpt(), ["q_proj", "up_proj"], r=2, alpha=4), tmp_path / "a")
    for k, v in lora_state_dict(model).items():
        assert torch.equal(v, lora_state_dict(other)[k])  # bit-exact, and the same NF4 base fingerprint


def test_qlora_model_output_close_to_the_base():
    base, model = tiny_gpt(), add_qlora(tiny_gpt(), ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"])
    idx = torch.randint(0, 32, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = base(idx)[0], model(idx)[0]
    assert 0 < (a - b).abs().max().item() < 0.1 * a.abs().max().item()  # B = 0: only quantization differs


def test_add_qlora_errors_speak():
    with pytest.raises(ValueError, match="matches no module name"):
        add_qlora(tiny_gpt(), ["qproj"])
    with pytest.raises(ValueError, match="tied"):
        add_qlora(tiny_gpt(), ["lm_head"])
    model = tiny_gpt()
    with pytest.raises(ValueError, match="r \\(the rank\\)"):
        add_qlora(model, ["q_proj"], r=0)
    assert not isinstance(model.blocks[0].attn.q_proj, NF4Linear)  # nothing was changed
    with pytest.raises(TypeError, match="full-precision nn.Linear"):
        NF4Linear.from_linear(nn.Conv1d(2, 2, 1))


def test_backward_keeps_no_dequantized_weight():
    _, q, ref = qlora_and_reference()
    x = torch.randn(4, 128, requires_grad=True)
    saved = {}
    for name, layer in (("qlora", q), ("lora", ref)):
        shapes = saved.setdefault(name, [])
        with torch.autograd.graph.saved_tensors_hooks(lambda t, s=shapes: s.append(tuple(t.shape)) or t, lambda t: t):
            out = layer(x)
        out.sum().backward()
    weight_shapes = {(64, 128), (128, 64)}  # W or its transpose
    assert weight_shapes & set(saved["lora"]) and not weight_shapes & set(saved["qlora"])


def test_qlora_input_gradient_equals_lora_over_the_dequantized_weight():
    _, q, ref = qlora_and_reference()
    grads = []
    for layer in (q, ref):
        x = torch.randn(4, 128, generator=torch.Generator().manual_seed(3), requires_grad=True)
        layer(x).pow(2).sum().backward()
        grads.append((x.grad, layer.lora_A.grad, layer.lora_B.grad))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5)


def test_script_runs_lora_and_qlora_with_the_same_init(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "qlora_vs_lora.py"
    spec = importlib.util.spec_from_file_location("qlora_vs_lora", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    lora, qlora = script.make_model("lora", 0), script.make_model("qlora", 0)
    a = {k: v for k, v in lora_state_dict(lora).items() if k.endswith("lora_A")}
    assert all(torch.equal(v, lora_state_dict(qlora)[k]) for k, v in a.items())
    out = tmp_path / "q.json"
    script.main(["--steps", "2", "--seeds", "0", "--batch-size", "2", "--block-size", "16", "--eval-windows", "2",
                 "--out", str(out)])
    runs = json.loads(out.read_text())["runs"]
    assert set(runs) == {"lora/steps=2/seed=0", "qlora/steps=2/seed=0"}
    assert runs["qlora/steps=2/seed=0"]["before"] != runs["lora/steps=2/seed=0"]["before"]  # the NF4 base differs


def test_merging_dora_into_nf4_is_refused_too():
    """DoRA's merge once copied W' into the dequantized temporary: no error, nothing merged, the adapter lost."""
    from lora_scratch.variants import DoRALinear

    _, q, _ = qlora_and_reference()
    dora = DoRALinear.from_lora(q).eval()
    x = torch.randn(3, 128)
    before = dora(x)
    with pytest.raises(RuntimeError, match="re-quantize"):
        dora.merge()
    assert not dora.merged and dora._weight_before_merge is None and torch.equal(dora(x), before)


def test_an_nf4_linear_computes_in_the_input_s_dtype():
    """QLoRA §3 dequantizes "the storage data type to the computation data type": bf16 in, bf16 out and back."""
    from lora_scratch.quant import NF4Linear

    torch.manual_seed(0)
    layer = NF4Linear.from_linear(torch.nn.Linear(64, 32, bias=False))
    x = torch.randn(3, 64, requires_grad=True)
    xb = x.detach().to(torch.bfloat16).requires_grad_()
    y, yb = layer(x), layer(xb)
    yb.sum().backward()
    assert yb.dtype == xb.grad.dtype == torch.bfloat16
    torch.testing.assert_close(yb.float(), y, atol=0.05, rtol=0.02)  # the same product, rounded to bf16
