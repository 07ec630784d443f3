"""lora_scratch.kv_cache: cached generation computes what the uncached path computes (issue 14 groundwork)."""
import pytest
import torch
from scriptlib import load_script

from lora_scratch import GPT, GPTConfig, add_lora, load_adapter
from lora_scratch.data import data_dir, encode
from lora_scratch.kv_cache import KVCache, forward_cached
from lora_scratch.train import load_base


def small_gpt(block_size: int = 16) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=32, block_size=block_size, n_layer=2, n_head=2, n_embd=16)).eval()


def test_prefill_then_steps_give_the_logits_of_the_full_forward():
    model = small_gpt()
    idx = torch.randint(0, 32, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        cache = KVCache.empty(model)
        prefill = forward_cached(model, idx[:, :5], cache)
        torch.testing.assert_close(prefill, model(idx[:, :5])[0])
        for t in range(5, 12):
            step = forward_cached(model, idx[:, t:t + 1], cache)[:, -1]
            torch.testing.assert_close(step, model(idx[:, :t + 1])[0][:, -1])
    assert cache.length == 12 and cache.layers[0].k.shape == (2, 2, 12, 8)  # (B, n_head, T, head_size)
    assert cache.nbytes() == 2 * 2 * 2 * 12 * 16 * 4  # layers x (k, v) x B x T x C x fp32



def test_cached_steps_go_through_houlsby_adapters():
    """Notebook 08 times a cached decode step of a Houlsby-adapted model: the adapters wrap o_proj and down_proj,
    which the cached path calls as modules, so a step must give the full forward's last logits there too."""
    from lora_scratch.adapter_layers import BottleneckAdapter, add_adapters

    model = add_adapters(small_gpt(), bottleneck=4)
    adapters = [m for m in model.modules() if isinstance(m, BottleneckAdapter)]
    with torch.no_grad():
        for m in adapters:
            # up = 0 (the start) would hide an adapter the cached path skipped
            m.up.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(7))
        idx = torch.randint(0, 32, (2, 10), generator=torch.Generator().manual_seed(8))
        assert not torch.allclose(model(idx)[0], add_adapters(small_gpt(), bottleneck=4)(idx)[0])  # adapters act
        cache = KVCache.empty(model)
        forward_cached(model, idx[:, :6], cache)
        for t in range(6, 10):
            step = forward_cached(model, idx[:, t:t + 1], cache)[:, -1]
            torch.testing.assert_close(step, model(idx[:, :t + 1])[0][:, -1])
    assert len(adapters) == 4 and cache.length == 10

def test_a_second_chunk_after_a_prefill_is_masked_causally():
    model = small_gpt()
    idx = torch.randint(0, 32, (1, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        cache = KVCache.empty(model)
        forward_cached(model, idx[:, :4], cache)
        chunk = forward_cached(model, idx[:, 4:], cache)  # 6 new tokens at once, after 4 cached
        torch.testing.assert_close(chunk, model(idx)[0][:, 4:])


@pytest.mark.parametrize("new_tokens", [8, 40])  # inside the 16-token window, and far past it (it slides)
def test_greedy_tokens_equal_the_uncached_path(new_tokens):
    model = small_gpt()
    prompt = torch.randint(0, 32, (2, 5), generator=torch.Generator().manual_seed(3))
    cached, plain = (model.generate(prompt, new_tokens, top_k=1, use_cache=c) for c in (True, False))
    assert torch.equal(cached, plain)


def test_greedy_tokens_equal_on_the_shipped_base_and_with_the_folio_adapter():
    prompt = encode("King.\nWhat say you to this?\n").unsqueeze(0)
    for model in (load_base(), load_adapter(load_base(), data_dir() / "adapters" / "folio")):
        cached, plain = (model.generate(prompt, 60, top_k=1, use_cache=c) for c in (True, False))
        assert torch.equal(cached, plain)


def test_sampling_with_the_same_generator_gives_the_same_text_and_the_cache_is_the_default():
    model = small_gpt()
    prompt = torch.zeros(1, 3, dtype=torch.long)
    a = model.generate(prompt, 30, temperature=0.8, generator=torch.Generator().manual_seed(4))
    b = model.generate(prompt, 30, temperature=0.8, generator=torch.Generator().manual_seed(4), use_cache=False)
    assert torch.equal(a, b)
    import inspect
    assert inspect.signature(model.generate).parameters["use_cache"].default is True


def test_an_adapter_on_k_or_v_makes_its_own_cache():
    base = small_gpt()
    adapted = add_lora(small_gpt(), ["v_proj"], r=2, alpha=4.0)
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(5))
    idx = torch.randint(0, 32, (1, 6), generator=torch.Generator().manual_seed(6))
    caches = {}
    with torch.no_grad():
        for name, model in (("base", base), ("adapted", adapted)):
            caches[name] = KVCache.empty(model)
            forward_cached(model, idx, caches[name])
    assert torch.equal(caches["base"].layers[0].k, caches["adapted"].layers[0].k)  # k_proj not adapted
    assert not torch.allclose(caches["base"].layers[0].v, caches["adapted"].layers[0].v)  # v_proj adapted


def test_more_than_block_size_tokens_is_refused_with_the_fix():
    model = small_gpt(block_size=8)
    cache = KVCache.empty(model)
    with torch.no_grad():
        forward_cached(model, torch.zeros(1, 6, dtype=torch.long), cache)
        with pytest.raises(ValueError, match="rebuild the cache"):
            forward_cached(model, torch.zeros(1, 3, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(torch.zeros(1, 1, dtype=torch.long), 2, temperature=0)


def test_the_benchmark_script_checks_equal_tokens_and_writes_its_table(tmp_path):
    import json

    script = load_script("bench_kv_cache")
    record = script.main(["--new", "4", "--prompts", "4", "--contexts", "3", "12", "--rounds", "1",
                          "--out", str(tmp_path / "kv.json")])
    assert json.loads((tmp_path / "kv.json").read_text())["rows"] == record["rows"]
    assert record["rows"][0]["speedup"] > 0 and record["rows"][0]["context_at_end"] == 8
    assert [row["context"] for row in record["steps"]] == [3, 12]  # the one-step curve, checked against the forward
    assert all(row["median_ms"]["KV cache"] > 0 and row["speedup"] > 0 for row in record["steps"])
