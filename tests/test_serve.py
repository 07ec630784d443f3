"""serve.py: merging in low precision loses small updates; storage arithmetic."""
import torch

from lora_scratch.serve import bf16_roundtrip, full_copies_bytes, int4_roundtrip, merge_loss, storage_bytes


def test_fp32_keeps_the_update_bf16_loses_a_small_one():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(64, 64, generator=g) * 0.05
    delta = torch.randn(64, 64, generator=g) * 1e-4  # much smaller than W's entries, like a LoRA update
    vanished, err = merge_loss(W, delta, lambda t: t)
    assert vanished == 0.0 and err < 1e-2
    vanished_bf16, err_bf16 = merge_loss(W, delta, bf16_roundtrip)
    assert vanished_bf16 > 0.5 and err_bf16 > 0.5, (vanished_bf16, err_bf16)
    assert merge_loss(W, delta, int4_roundtrip)[1] > 5 * err_bf16  # re-quantizing: noise far above ΔW


def test_int4_roundtrip_uses_at_most_15_levels_per_block():
    t = torch.randn(4, 64)
    q = int4_roundtrip(t)
    assert all(len(torch.unique(row)) <= 15 for row in q)
    assert torch.allclose(q.abs().amax(dim=1), t.abs().amax(dim=1))  # absmax is kept exactly


def test_storage_one_base_vs_copies():
    assert storage_bytes(100, 1, 10, 2) == 220
    assert full_copies_bytes(100, 10, 2) == 2000


def test_merge_and_unload_gives_a_plain_model_with_the_same_outputs():
    from lora_scratch.gpt import GPT, GPTConfig
    from lora_scratch.lora import add_lora, lora_layers
    from lora_scratch.serve import merge_and_unload

    torch.manual_seed(0)
    model = add_lora(GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=8)),
                     targets=["q_proj", "up_proj"], r=2, alpha=4).eval()
    for layer in lora_layers(model).values():
        torch.nn.init.normal_(layer.lora_B)
    idx = torch.randint(0, 32, (2, 5))
    with torch.no_grad():
        before = model(idx)[0]
        merge_and_unload(model)
        after = model(idx)[0]
    assert not lora_layers(model) and isinstance(model.blocks[0].attn.q_proj, torch.nn.Linear)
    assert torch.allclose(before, after, atol=1e-5)
