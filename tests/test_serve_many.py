"""serve.generate_many: requests for different adapters decoded in one batch give what each gives alone."""
import copy
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scriptlib import load_script

from lora_scratch import GPT, GPTConfig, add_lora, load_adapter, save_adapter
from lora_scratch.data import data_dir, encode
from lora_scratch.lora import lora_layers
from lora_scratch.serve import AdapterStack, BatchCache, Gathered, _decode, _prefill, generate_many
from lora_scratch.train import load_base
from lora_scratch.variants import to_dora, to_pissa

SHIPPED = {name: data_dir() / "adapters" / name for name in ("folio", "milton", "sonnets")}
VOCAB, BLOCK = 32, 24


def small_base() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16)).eval()


def adapted(base: GPT, targets, r: int, seed: int, alpha: float = 4.0) -> GPT:
    model = add_lora(copy.deepcopy(base), list(targets), r=r, alpha=alpha)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.normal_(0, 0.3, generator=g)  # a trained-looking adapter: B A is not zero
    return model.eval()


def alone(base: GPT, folder, prompt: torch.Tensor, new: int) -> torch.Tensor:
    model = copy.deepcopy(base) if folder is None else load_adapter(copy.deepcopy(base), folder)
    return model.generate(prompt.unsqueeze(0), new, top_k=1)[0]


def test_shipped_adapters_and_the_base_in_one_batch_equal_decoding_each_alone():
    base = load_base()
    texts = ["King.\n", "To be, or not to be, that is", "Of Mans First Disobedience", "Shall I", "O"]
    requests = [(name, encode(t)) for name, t in zip(["folio", None, "milton", "sonnets", "folio"], texts)]
    before = copy.deepcopy(base.state_dict())
    outs = generate_many(base, SHIPPED, requests, 40, top_k=1)
    for (name, prompt), out in zip(requests, outs):
        assert out.shape == (len(prompt) + 40,) and torch.equal(out[:len(prompt)], prompt)
        assert torch.equal(out, alone(base, None if name is None else SHIPPED[name], prompt, 40)), name
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # the base is left as it was
    assert not lora_layers(base)


def test_mixed_ranks_and_targets_are_padded_with_zeros_and_windows_slide(tmp_path):
    base = small_base()
    specs = {"qv2": (["q_proj", "v_proj"], 2), "mlp4": (["up_proj", "down_proj"], 4), "all1": (["q_proj", "k_proj",
             "v_proj", "o_proj", "up_proj", "down_proj"], 1)}
    folders = {name: save_adapter(adapted(base, t, r, seed=i), tmp_path / name)
               for i, (name, (t, r)) in enumerate(specs.items())}
    stack = AdapterStack(base, folders)
    assert stack.r_max == 4 and stack.A["blocks.0.attn.q_proj"].shape == (4, 4, 16)  # slots: base + 3 adapters
    assert torch.count_nonzero(stack.A["blocks.0.mlp.up_proj"][1]) == 0  # qv2 leaves the MLP alone: zeros
    assert torch.count_nonzero(stack.B["blocks.0.attn.q_proj"][1][:, 2:]) == 0  # rank 2 padded to 4
    g = torch.Generator().manual_seed(1)
    requests = [(name, torch.randint(0, VOCAB, (n,), generator=g))
                for name, n in [("qv2", 3), ("mlp4", 20), (None, 9), ("all1", 1), ("qv2", 24)]]
    outs = generate_many(base, folders, requests, 30, top_k=1)  # 20 + 30 and 24 + 30 pass BLOCK = 24
    for (name, prompt), out in zip(requests, outs):
        assert torch.equal(out, alone(base, folders.get(name), prompt, 30)), name


@settings(max_examples=25, deadline=None)
@given(ranks=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       lengths=st.lists(st.integers(1, BLOCK - 6), min_size=1, max_size=5), data=st.data())
def test_each_row_gets_its_own_adapters_logits(ranks, lengths, data):
    """Teacher-forced: prefill every row, then feed known tokens; each row's logits at every step equal the full
    forward of its own adapted model (so sampling, greedy or not, sees the same distribution)."""
    base = small_base()
    all_targets = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
    models = {f"a{i}": adapted(base, data.draw(st.lists(st.sampled_from(all_targets), min_size=1, max_size=6,
                                                        unique=True)), r, seed=i) for i, r in enumerate(ranks)}
    with tempfile.TemporaryDirectory() as d:  # the stack holds copies: the folders may go
        stack = AdapterStack(base, {n: save_adapter(m, Path(d) / n) for n, m in models.items()})
    names = [data.draw(st.sampled_from([None, *models])) for _ in lengths]
    g = torch.Generator().manual_seed(len(lengths))
    seqs = [torch.randint(0, VOCAB, (n + 5,), generator=g) for n in lengths]
    slots, cache = stack.slots(names), BatchCache(base, len(names))
    with torch.no_grad():
        got = [[_prefill(base, stack, slots[i], cache, i, s[:n])] for i, (s, n) in enumerate(zip(seqs, lengths))]
        rows, gathered = torch.arange(len(names)), Gathered(stack, slots)
        for step in range(5):
            last = torch.stack([s[n + step] for s, n in zip(seqs, lengths)])
            for i, row in enumerate(_decode(base, gathered, cache, rows, last)):
                got[i].append(row)
        for i, (name, s, n) in enumerate(zip(names, seqs, lengths)):
            model = base if name is None else models[name]
            want = model(s[: n + 5].unsqueeze(0))[0][0, n - 1:]
            torch.testing.assert_close(torch.stack(got[i]), want, atol=2e-5, rtol=1e-4)


def test_sampling_is_reproducible_and_no_new_tokens_gives_the_prompts():
    base = load_base()
    requests = [("folio", encode("King.\n")), (None, encode("Why"))]
    a, b = (generate_many(base, SHIPPED, requests, 20, temperature=0.8, generator=torch.Generator().manual_seed(3))
            for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert [o.tolist() for o in generate_many(base, SHIPPED, requests, 0)] == [p.tolist() for _, p in requests]


def test_bad_input_gets_a_clear_error(tmp_path):
    base = small_base()
    good = save_adapter(adapted(base, ["q_proj"], 2, seed=0), tmp_path / "good")
    dora = save_adapter(to_dora(adapted(base, ["q_proj"], 2, seed=0)), tmp_path / "dora")
    pissa = save_adapter(to_pissa(add_lora(copy.deepcopy(base), ["q_proj"], r=2, alpha=2)), tmp_path / "pissa")
    torch.manual_seed(9)
    other = GPT(base.config).eval()
    prompt = torch.tensor([1, 2, 3])
    with pytest.raises(KeyError, match="'nope'.*not among the adapters given.*'good'.*None for the base"):
        generate_many(base, {"good": good}, [("nope", prompt)], 2)
    with pytest.raises(ValueError, match="DoRA adapter.*additive"):
        generate_many(base, {"d": dora}, [(None, prompt)], 2)
    with pytest.raises(ValueError, match="PiSSA adapter.*additive"):
        generate_many(base, {"p": pissa}, [(None, prompt)], 2)
    with pytest.raises(ValueError, match="fingerprint.*the base it was trained on"):
        generate_many(other, {"good": good}, [(None, prompt)], 2)
    with pytest.raises(ValueError, match="plain GPT without LoRA layers"):
        generate_many(load_adapter(copy.deepcopy(base), good), {}, [(None, prompt)], 2)
    for bad in (torch.tensor([[1, 2]]), torch.tensor([1.0, 2.0]), torch.tensor([], dtype=torch.long), [1, 2]):
        with pytest.raises(ValueError, match="non-empty 1-D tensor of token ids"):
            generate_many(base, {}, [(None, bad)], 2)
    with pytest.raises(ValueError, match="outside 0..31"):
        generate_many(base, {}, [(None, torch.tensor([1, 32]))], 2)
    with pytest.raises(ValueError, match="pair"):
        generate_many(base, {}, [prompt], 2)
    with pytest.raises(ValueError, match="non-empty list"):
        generate_many(base, {}, [], 2)
    with pytest.raises(ValueError, match="temperature"):
        generate_many(base, {}, [(None, prompt)], 2, temperature=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_many(base, {}, [(None, prompt)], -1)
    with pytest.raises(TypeError, match="dict from names to adapter folders"):
        generate_many(base, [good], [(None, prompt)], 2)


def test_the_serving_benchmark_checks_equal_tokens_and_writes_its_tables(tmp_path):
    """scripts/bench_serving.py in miniature: its rows exist, each with the three ways side by side (it asserts that
    swapping and generate_many give the same tokens before timing), and its memory figures are the stack's bytes."""
    import json

    script = load_script("bench_serving")
    record = script.main(["--new", "2", "--rounds", "1", "--train-steps", "1", "--out", str(tmp_path / "s.json")])
    assert json.loads((tmp_path / "s.json").read_text())["main"] == record["main"]
    assert [r["adapters"] for r in record["by_adapters"]] == [1, 2, 4, 8, 32]
    assert [r["batch"] for r in record["by_batch"]] == [1, 2, 4, 8, 16, 32]
    for row in record["by_adapters"] + record["by_batch"]:
        assert set(row["tokens_per_s"]) == {"(a) swap", "(b) generate_many", "(c) merged"}
        assert all(v > 0 for v in row["tokens_per_s"].values())
    cfg = load_base().config
    assert record["memory"]["adapter_bytes"] == 4 * 34_560  # all six projections at r = 2, fp32
    assert record["memory"]["kv_cache_bytes_per_request"] == 2 * cfg.n_layer * cfg.block_size * cfg.n_embd * 4
