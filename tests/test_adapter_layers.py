"""Houlsby-style adapters: start as the identity, sit after o_proj/down_proj, count their parameters."""
import pytest
import torch
import torch.nn as nn

from lora_scratch.adapter_layers import BottleneckAdapter, adapter_params, add_adapters
from lora_scratch.gpt import GPT, GPTConfig

SMALL = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=16)


def test_adapter_starts_as_identity_and_learns():
    torch.manual_seed(0)
    lin = nn.Linear(8, 8)
    ad = BottleneckAdapter(lin, bottleneck=2)
    x = torch.randn(3, 8)
    assert torch.equal(ad(x), lin(x))
    ad(x).sum().backward()
    assert ad.up.weight.grad is not None and lin.weight.grad is None  # the wrapped layer is frozen


def test_add_adapters_wraps_two_per_block_and_keeps_outputs():
    torch.manual_seed(0)
    model = GPT(SMALL).eval()
    idx = torch.randint(0, 64, (2, 5))
    before = model(idx)[0]
    add_adapters(model, bottleneck=4)
    wrapped = [n for n, m in model.named_modules() if isinstance(m, BottleneckAdapter)]
    assert wrapped == ["blocks.0.attn.o_proj", "blocks.0.mlp.down_proj", "blocks.1.attn.o_proj",
                       "blocks.1.mlp.down_proj"]
    assert torch.equal(model(idx)[0], before)
    extra = sum(p.numel() for n, p in model.named_parameters() if ".down." in n or ".up." in n)
    assert extra == 4 * adapter_params(16, 4)


def test_bad_inputs():
    with pytest.raises(ValueError, match="bottleneck"):
        BottleneckAdapter(nn.Linear(4, 4), 0)
    with pytest.raises(TypeError, match="nn.Linear"):
        BottleneckAdapter(nn.ReLU(), 2)
    with pytest.raises(ValueError, match="no nn.Linear"):
        add_adapters(nn.Sequential(nn.ReLU()))
