"""lora_scratch.memory (analytic) and lora_scratch.memory_measure (measured) agree, and the formulas give
the known figures exactly."""
import math

import pytest
import torch
import torch.nn as nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from lora_scratch import GPT, GPTConfig, add_lora, mark_only_lora_as_trainable
from lora_scratch.counting import count_params
from lora_scratch.memory import (
    LINEARS,
    NF4_DQ_BITS,
    Breakdown,
    activation_bytes,
    adam_state_bytes,
    korthikanti_layer_bytes,
    layer_activation_bytes,
    lora_memory_saving,
    lora_param_count,
    memory_breakdown,
    n_params,
    optimizer_bytes_per_param,
    param_groups,
    training_bytes_per_param,
)
from lora_scratch.memory_measure import SavedTensors, checkpointed_blocks, measure_training_step

GPT3 = GPTConfig(vocab_size=50257, block_size=2048, n_layer=96, n_head=96, n_embd=12288)
SMALL = GPTConfig(vocab_size=256, block_size=64, n_layer=2, n_head=2, n_embd=32)


def test_bytes_per_parameter_follow_zero_and_the_precision_table():
    assert training_bytes_per_param("mixed", "adam") == 16  # ZeRO §3.1: 2 + 2 + 12
    assert training_bytes_per_param("fp32", "adamw") == 16  # 4 + 4 + 8: same total, other parts
    assert optimizer_bytes_per_param("mixed", "adam") == 12 and optimizer_bytes_per_param("fp32", "adam") == 8
    assert training_bytes_per_param("bf16", "adam") == 8
    assert training_bytes_per_param("fp32", "sgd_momentum") == 12 and training_bytes_per_param("fp32", "sgd") == 8
    assert training_bytes_per_param("mixed", "adam8bit") == 10  # 2 + 2 + master 4 + 2 x 1 byte
    assert adam_state_bytes(124_439_808, 4) == 995_518_464


def test_parameter_counts_from_the_config():
    assert n_params(GPTConfig.gpt2_small()) == 124_439_808
    assert param_groups(GPTConfig.gpt2_small())["linear"] == 12 * 12 * 768 * 768
    for cfg in (GPTConfig.tiny(), SMALL, GPTConfig(n_layer=1, n_head=2, n_embd=8, bias=False)):
        assert n_params(cfg) == count_params(GPT(cfg))
    assert lora_param_count(GPT3, ("q_proj", "v_proj"), r=4) == 18_874_368  # LoRA paper §4.2, "35 MB" in fp16
    model = add_lora(GPT(SMALL), list(LINEARS), r=3)
    mark_only_lora_as_trainable(model)
    assert lora_param_count(SMALL, LINEARS, r=3) == count_params(model, trainable_only=True)


def test_activation_formulas_on_known_cases():
    assert layer_activation_bytes(GPTConfig.gpt2_small(), 1, 128) == 4 * (16 * 128 * 768 + 16 * 128)
    assert activation_bytes(GPTConfig.tiny(), 2, 16) == 2_047_620  # derived by hand in the notebook
    assert activation_bytes(GPTConfig.tiny(), 2, 16, "lora", ("q_proj", "v_proj"), r=4) == 1_397_764
    assert korthikanti_layer_bytes(2048, 1, 12288, 96) == 2048 * 12288 * (34 + 80)
    # the same 16 tensors: at 2 bytes plus two 1-byte dropout masks and 5as^2b it is Korthikanti's count
    s, b, h, a = 128, 1, 768, 12
    ours_16bit = layer_activation_bytes(GPTConfig.gpt2_small(), b, s, act_bytes=2)
    assert korthikanti_layer_bytes(s, b, h, a) == ours_16bit + 2 * s * b * h + 5 * a * s * s * b - 2 * (4 + a) * s * b


def test_lora_and_qlora_breakdowns():
    full = memory_breakdown(GPTConfig.gpt2_small(), 1, 128, "full", "fp32", "adam")
    assert full.weights + full.gradients + full.optimizer == 16 * 124_439_808
    lora = memory_breakdown(GPTConfig.gpt2_small(), 1, 128, "lora", "fp32", "adam", ("q_proj", "v_proj"), r=8)
    n_lora = lora_param_count(GPTConfig.gpt2_small(), ("q_proj", "v_proj"), 8)
    assert lora.gradients == 4 * n_lora and lora.optimizer == 8 * n_lora
    assert lora.weights == 4 * (124_439_808 + n_lora)
    qlora = memory_breakdown(GPTConfig.gpt2_small(), 1, 128, "qlora", "bf16", "adam", ("q_proj", "v_proj"), r=8)
    linear, other = param_groups(GPTConfig.gpt2_small()).values()
    assert math.isclose(qlora.weights, linear * NF4_DQ_BITS / 8 + 2 * (other + n_lora))
    assert round(NF4_DQ_BITS, 3) == 4.127  # QLoRA §3
    gpt3 = memory_breakdown(GPT3, 1, 2048, "lora", "bf16", "adam", ("q_proj", "v_proj"), r=4)
    assert 349e9 < gpt3.weights < 350e9  # "350 GB": the fp16 weights of the frozen base
    assert Breakdown(1, 2, 3, 4).total == 10 and Breakdown(1, 2, 3, 4).on_gpu(offload_optimizer=True) == 7


def test_lora_memory_saving_first_order():
    assert lora_memory_saving(100, 0, 0.0) == 0.75  # the frozen weights stay: 4 of 16 bytes
    assert lora_memory_saving(100, 0, 1200.0) == 1 - 1600 / 2800


@pytest.mark.parametrize("bad", [dict(precision="fp8"), dict(optimizer="adagrad"), dict(method="prefix"),
                                 dict(targets=("c_attn",))])
def test_bad_input_is_refused_with_a_clear_message(bad):
    kwargs = dict(method="lora") | bad
    with pytest.raises(ValueError, match=list(bad)[0] if "targets" not in bad else "not a Linear"):
        memory_breakdown(SMALL, 1, 8, **kwargs)
    with pytest.raises(ValueError, match="dropout"):
        activation_bytes(GPTConfig(dropout=0.1), 1, 8)


def batch(b, t):
    """Inputs and targets as two tensors: views of one (2, b, t) tensor would share (and count) one storage."""
    return torch.randint(0, SMALL.vocab_size, (b, t)), torch.randint(0, SMALL.vocab_size, (b, t))


def _model(targets):
    torch.manual_seed(0)
    model = GPT(SMALL)
    if targets:
        add_lora(model, list(targets), r=4)
        mark_only_lora_as_trainable(model)
    return model


@pytest.mark.parametrize("targets", [None, ("q_proj", "v_proj"), LINEARS, ("o_proj",), ("k_proj", "down_proj")])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_predicted_matches_measured(targets, checkpointing):
    """Within 10 % per part (the course's contract); in fact activations agree to the byte."""
    x, y = batch(3, 32)
    model = _model(targets)
    measured = measure_training_step(model, x, y, checkpointing=checkpointing)
    method = "lora" if targets else "full"
    predicted = memory_breakdown(SMALL, 3, 32, method, "fp32", "adamw", targets or (), r=4)
    for part in ("weights", "gradients", "optimizer"):
        assert math.isclose(getattr(measured, part), getattr(predicted, part), rel_tol=0.10), part
    n_tensors = sum(p.requires_grad for p in model.parameters())
    assert measured.optimizer - predicted.optimizer == 4 * n_tensors  # Adam's step counters, 4 bytes each
    assert measured.weights == predicted.weights and measured.gradients == predicted.gradients
    assert measured.activations == activation_bytes(SMALL, 3, 32, method, targets or (), 4,
                                                     checkpointing=checkpointing)
    assert all(p.grad is None for p in model.parameters())  # zero_grad(set_to_none=True) freed them


def test_math_attention_keeps_the_attention_matrix():
    model, (x, y) = _model(None), batch(3, 32)
    sizes = {}
    for name, backend in [("flash", None), ("math", SDPBackend.MATH)]:
        with (sdpa_kernel(backend) if backend else torch.enable_grad()), SavedTensors(model) as saved:
            model(x, y)
        sizes[name] = saved.bytes
    assert sizes["flash"] == activation_bytes(SMALL, 3, 32)
    assert sizes["math"] == activation_bytes(SMALL, 3, 32, attn_matrix=True)
    assert sizes["math"] - sizes["flash"] == 4 * SMALL.n_layer * 3 * SMALL.n_head * 32 * 31


def test_saved_tensor_hooks_skip_parameters_and_count_storages_once():
    layer = nn.Linear(8, 4)
    x = torch.randn(5, 8, requires_grad=True)
    with SavedTensors(layer) as saved:
        y = layer(x) + layer(x)  # the same input saved twice: one storage
    assert saved.bytes == x.numel() * 4
    assert {kind for *_, kind in saved.records} == {"new", "again", "parameter"}
    y.sum().backward()


def test_reentrant_checkpoint_loses_the_gradient_with_frozen_inputs():
    model, (x, y) = _model(("q_proj", "v_proj")), batch(1, 16)
    with checkpointed_blocks(model, use_reentrant=True), pytest.warns(UserWarning, match="requires_grad"):
        _, loss = model(x, y)
    assert not loss.requires_grad  # nothing to backpropagate: the adapters would never train
    with checkpointed_blocks(model, use_reentrant=False):
        _, loss = model(x, y)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
