"""interop: our GPT and LoRA against transformers' GPT-2 and PEFT, on random models (nothing is downloaded)."""
import copy
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: it must never reach the Hub here
os.environ["TRANSFORMERS_VERBOSITY"] = "error"

import peft  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from scriptlib import load_script

from lora_scratch import GPT, GPTConfig, add_lora, interop, lora_state_dict, peft_format, save_adapter  # noqa: E402
from lora_scratch.interop import (  # noqa: E402
    compact_lora,
    fuse_qkv_lora,
    gpt_from_hf,
    gpt_to_hf,
    load_peft_adapter,
    save_peft_adapter,
    split_c_attn_lora,
)
from lora_scratch.lora import lora_layers  # noqa: E402
from lora_scratch.serve import AdapterStack, BatchCache, _prefill  # noqa: E402
from lora_scratch.variants import to_dora, use_rslora  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft on transformers 5
TOL = 1e-4  # fp32: the two models add the same numbers in different orders
ALL_SIX = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("interop tried to reach the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def hf_gpt2(seed=0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=4, bos_token_id=None, eos_token_id=None)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**(cfg | kw))).eval()


def our_gpt(seed=0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(**(dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16) | kw))).eval()


def tokens(vocab: int, T: int, seed=1) -> torch.Tensor:
    return torch.randint(0, vocab, (2, T), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def diff(a: torch.nn.Module, b: torch.nn.Module, idx: torch.Tensor) -> float:
    def logits(m):
        out = m(input_ids=idx) if not isinstance(m, GPT) else m(idx)
        return out.logits if hasattr(out, "logits") else out[0]
    d = (logits(a) - logits(b)).abs().max().item()
    print(f"max |logits difference| = {d:.2e}")
    return d


def randomize_B(model: torch.nn.Module, seed=2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g))  # a trained-looking adapter: B A is not zero


# ---- the package stays from scratch ----

def test_importing_the_package_and_interop_imports_neither_transformers_nor_peft():
    code = ("import sys, lora_scratch, lora_scratch.interop, lora_scratch.serve, lora_scratch.train; "
            "print(sorted({'transformers', 'peft'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_without_transformers_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # what `import transformers` finds when it is missing
    for call in (lambda: gpt_to_hf(our_gpt()), lambda: gpt_from_hf(object())):
        with pytest.raises(ImportError, match=r'pip install -e "\.\[interop\]"'):
            call()


# ---- weights: GPT-2 <-> ours ----

CONFIGS = [dict(),
           dict(vocab_size=101, n_positions=33, n_embd=48, n_layer=3, n_head=3, activation_function="gelu"),
           dict(vocab_size=257, n_positions=64, n_embd=64, n_layer=1, n_head=8,
                activation_function="gelu_pytorch_tanh"),
           dict(vocab_size=11, n_positions=7, n_embd=24, n_layer=4, n_head=6, resid_pdrop=0.0)]


@pytest.mark.parametrize("kw", CONFIGS, ids=["default", "exact-gelu", "pytorch-tanh", "deep-narrow"])
def test_gpt2_of_any_config_gives_the_same_logits_in_ours_and_back(kw):
    hf = hf_gpt2(**kw)
    ours = gpt_from_hf(hf)
    idx = tokens(hf.config.vocab_size, hf.config.n_positions)
    assert diff(hf, ours, idx) < TOL
    assert ours.config.gelu_approximate == ("none" if kw.get("activation_function") == "gelu" else "tanh")
    again = gpt_to_hf(ours)
    theirs, back = hf.state_dict(), again.state_dict()
    assert theirs.keys() == back.keys() and all(torch.equal(theirs[k], back[k]) for k in theirs)
    assert diff(hf, again, idx) < TOL
    copied = sum(ours_t.numel() for ours_t, _ in interop._weight_pairs(ours, hf))
    assert copied == sum(p.numel() for p in ours.parameters())  # every weight of ours came from GPT-2 (head: tied)


@pytest.mark.parametrize("gelu", ["none", "tanh"])
def test_our_gpt_gives_the_same_logits_in_transformers_and_back(gelu):
    ours = our_gpt(gelu_approximate=gelu)
    hf = gpt_to_hf(ours)
    assert hf.config.activation_function == {"none": "gelu", "tanh": "gelu_new"}[gelu]
    assert diff(ours, hf, tokens(50, 16)) < TOL
    back = gpt_from_hf(hf)
    assert back.config == ours.config
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in ours.state_dict().items())


@settings(max_examples=6, deadline=None)
@given(n_layer=st.integers(1, 3), n_head=st.integers(1, 4), head=st.integers(1, 8), vocab=st.integers(2, 80),
       positions=st.integers(1, 20), tanh=st.booleans())
def test_small_configs_both_ways(n_layer, n_head, head, vocab, positions, tanh):
    ours = our_gpt(vocab_size=vocab, block_size=positions, n_layer=n_layer, n_head=n_head, n_embd=n_head * head,
                   gelu_approximate="tanh" if tanh else "none")
    hf = gpt_to_hf(ours)
    idx = tokens(vocab, positions)
    assert diff(ours, hf, idx) < TOL
    assert diff(hf, gpt_from_hf(hf), idx) < TOL


def test_reorder_and_upcast_attn_computes_the_same_and_is_accepted():
    hf = hf_gpt2(reorder_and_upcast_attn=True, attn_implementation="eager")
    assert diff(hf, gpt_from_hf(hf), tokens(64, 16)) < TOL


@pytest.mark.parametrize("kw, why", [
    (dict(activation_function="relu"), "activation_function='relu'"),
    (dict(n_inner=40), "n_inner=40"),
    (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx"),
    (dict(scale_attn_weights=False), "scale_attn_weights=False"),
    (dict(add_cross_attention=True), "add_cross_attention"),
    (dict(layer_norm_epsilon=1e-6), "layer_norm_epsilon"),
    (dict(tie_word_embeddings=False), "not its token embedding")])
def test_gpt2_configs_ours_cannot_compute_are_refused(kw, why):
    hf = hf_gpt2(**kw)
    if kw.get("tie_word_embeddings") is False:
        with torch.no_grad():
            hf.lm_head.weight.normal_()
    with pytest.raises(ValueError, match="does not fit our GPT.*" + why):
        gpt_from_hf(hf)


def test_models_that_are_not_gpt2_or_hold_peft_layers_are_refused():
    with pytest.raises(TypeError, match="GPT2LMHeadModel.*GPT2Model"):
        gpt_from_hf(transformers.GPT2Model(hf_gpt2().config))
    wrapped = peft.get_peft_model(hf_gpt2(), peft.LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True))
    with pytest.raises(TypeError, match="merge_and_unload"):
        gpt_from_hf(wrapped)
    with pytest.raises(ValueError, match="c_attn is a Linear.*merge_and_unload"):
        gpt_from_hf(wrapped.base_model.model)  # get_peft_model put its layers into the GPT2LMHeadModel itself
    with pytest.raises(ValueError, match="LoRA layers.*save_peft_adapter"):
        gpt_to_hf(add_lora(our_gpt(), ["q_proj"], r=2))
    with pytest.raises(ValueError, match="bias=False"):
        gpt_to_hf(our_gpt(bias=False))


# ---- c_attn: one LoRA of rank 2r = two LoRAs of rank r; three LoRAs sharing A = one ----

def test_fused_c_attn_lora_is_the_separate_updates_stacked():
    C, r = 8, 2
    q, v = (torch.randn(r, C), torch.randn(C, r)), (torch.randn(r, C), torch.randn(C, r))
    A, B = fuse_qkv_lora(q=q, v=v)
    assert A.shape == (2 * r, C) and B.shape == (3 * C, 2 * r)
    expected = torch.cat([q[1] @ q[0], torch.zeros(C, C), v[1] @ v[0]])  # row blocks: q, k, v
    torch.testing.assert_close(B @ A, expected)
    parts = [compact_lora(a, b) for a, b in split_c_attn_lora(A, B)]
    assert parts[1] is None  # k has no LoRA
    for (a, b), (a0, b0) in zip([parts[0], parts[2]], [q, v]):
        assert torch.equal(a, a0) and torch.equal(b, b0)
    shared = split_c_attn_lora(torch.randn(r, C), torch.randn(3 * C, r))
    A2, B2 = fuse_qkv_lora(*shared)
    assert A2.shape == (r, C) and torch.equal(B2, torch.cat([b for _, b in shared]))


# ---- adapters: ours -> PEFT -> ours ----

@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], ALL_SIX, ["k_proj"], ["blocks.0.attn.q_proj", "o_proj"]],
                         ids=["qv", "all-six", "k", "one-block"])
@pytest.mark.parametrize("rslora", [False, True], ids=["lora", "rslora"])
def test_our_adapter_in_peft_gives_our_logits_and_comes_back_exactly(tmp_path, targets, rslora):
    base = our_gpt(gelu_approximate="tanh")
    model = add_lora(copy.deepcopy(base), targets, r=3, alpha=5.0, dropout=0.1).eval()
    if rslora:
        use_rslora(model)
    randomize_B(model)
    save_peft_adapter(model, tmp_path / "a")
    theirs = peft.PeftModel.from_pretrained(gpt_to_hf(base), tmp_path / "a").eval()
    idx = tokens(50, 16)
    assert diff(model, theirs, idx) < TOL
    assert diff(model, base, idx) > 10 * TOL  # the adapter does change the logits
    back = load_peft_adapter(copy.deepcopy(base), tmp_path / "a").eval()
    assert sorted(lora_layers(back)) == sorted(lora_layers(model))  # k_proj of a q, v adapter stays unadapted
    mine, again = lora_state_dict(model), lora_state_dict(back)
    assert all(torch.equal(mine[k], again[k]) for k in mine)
    assert diff(model, back, idx) < TOL


def test_the_peft_config_scales_the_fused_rank_to_our_alpha_over_r(tmp_path):
    model = add_lora(our_gpt(), ALL_SIX, r=4, alpha=16.0)
    save_peft_adapter(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["target_modules"] == ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"]
    assert (config["r"], config["lora_alpha"]) == (4, 16)
    assert config["rank_pattern"] == {"c_attn": 12} and config["alpha_pattern"] == {"c_attn": 48}  # 48/12 = 16/4
    keys = load_file(tmp_path / "adapter_model.safetensors")
    assert keys["base_model.model.transformer.h.1.attn.c_attn.lora_B.weight"].shape == (48, 12)


# ---- adapters: PEFT -> ours -> PEFT ----

PEFT_CASES = [dict(target_modules=["c_attn"]), dict(target_modules=["c_attn", "c_proj", "c_fc"]),
              dict(target_modules=["c_attn", "c_proj"], use_rslora=True, lora_dropout=0.05),
              dict(target_modules=["c_fc"], layers_to_transform=[1])]


@pytest.mark.parametrize("kw", PEFT_CASES, ids=["c_attn", "c_attn-c_proj-c_fc", "rslora", "one-layer"])
def test_a_peft_adapter_in_ours_gives_its_logits_and_saves_back_the_same(tmp_path, kw):
    hf = hf_gpt2(activation_function="gelu_new")
    ours = gpt_from_hf(hf)
    theirs = peft.get_peft_model(hf, peft.LoraConfig(r=4, lora_alpha=8, fan_in_fan_out=True, **kw)).eval()
    randomize_B(theirs)
    theirs.save_pretrained(tmp_path / "peft")
    load_peft_adapter(ours, tmp_path / "peft")
    idx = tokens(64, 16)
    assert diff(theirs, ours, idx) < TOL
    if "c_attn" in kw["target_modules"]:
        assert {n.rsplit(".", 1)[1] for n in lora_layers(ours)} >= {"q_proj", "k_proj", "v_proj"}
    save_adapter(ours, tmp_path / "ours")  # our own format takes it too: one rank, one scaling
    save_peft_adapter(ours, tmp_path / "again")
    first, second = load_file(tmp_path / "peft" / "adapter_model.safetensors"), load_file(
        tmp_path / "again" / "adapter_model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    reloaded = peft.PeftModel.from_pretrained(hf_gpt2(activation_function="gelu_new"), tmp_path / "again")
    assert diff(theirs, reloaded, idx) < TOL


# ---- bad adapters: clear errors, and the model is left as it was ----

def peft_folder(tmp_path, **kw):
    hf = hf_gpt2()
    theirs = peft.get_peft_model(hf, peft.LoraConfig(r=2, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True,
                                                     **kw))
    randomize_B(theirs)
    theirs.save_pretrained(tmp_path)
    return tmp_path


def edit(folder, config=None, tensors=None):
    if config:
        path = folder / "adapter_config.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | config))
    if tensors:
        weights = load_file(folder / "adapter_model.safetensors")
        save_file(tensors(weights), folder / "adapter_model.safetensors")
    return folder


def renamed(weights):
    return {k.replace("transformer.h", "model.layers").replace("attn.c_attn", "self_attn.q_proj"): v
            for k, v in weights.items()}


BAD = {"other-architecture": (dict(tensors=renamed), "not a LoRA adapter for GPT-2"),
       "embedding": (dict(tensors=lambda w: w | {"base_model.model.transformer.wte.lora_embedding_A":
                                                 torch.zeros(2, 64)}), "not a LoRA adapter for GPT-2"),
       "other-width": (dict(), "made for another base"),
       "more-layers": (dict(tensors=lambda w: w | {k.replace("h.0.", "h.5."): v.clone() for k, v in w.items()}),
                       "has 2 blocks"),
       "prefix-tuning": (dict(config={"peft_type": "PREFIX_TUNING"}), "LoRA only"),
       "dora": (dict(config={"use_dora": True}), "DoRA"),
       "pissa": (dict(config={"init_lora_weights": "pissa"}), "changes the base weights"),
       "rank-mismatch": (dict(config={"r": 3}), "rank 3"),
       "two-scalings": (dict(config={"alpha_pattern": {"c_proj": 1}}), "differ in scaling")}


@pytest.mark.parametrize("case", BAD)
def test_bad_peft_adapters_are_refused_and_leave_the_model_alone(tmp_path, case):
    changes, why = BAD[case]
    folder = edit(peft_folder(tmp_path), **changes)
    model = our_gpt(n_embd=16 if case == "other-width" else 32, vocab_size=64)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=why):
        load_peft_adapter(model, folder)
    assert not lora_layers(model) and model.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_other_folders_are_refused_with_what_to_use(tmp_path):
    save_adapter(add_lora(our_gpt(), ["q_proj"], r=2), tmp_path / "ours")
    with pytest.raises(ValueError, match="load_adapter"):
        load_peft_adapter(our_gpt(), tmp_path / "ours")
    folder = peft_folder(tmp_path / "bin")
    (folder / "adapter_model.safetensors").rename(folder / "adapter_model.bin")
    with pytest.raises(ValueError, match="safetensors only"):
        load_peft_adapter(our_gpt(), folder)
    with pytest.raises(ValueError, match="no readable adapter_config.json"):
        load_peft_adapter(our_gpt(), tmp_path / "missing")
    with pytest.raises(ValueError, match="already has LoRA layers"):
        load_peft_adapter(add_lora(our_gpt(n_embd=32, vocab_size=64), ["up_proj"], r=2), peft_folder(tmp_path / "p"))


def test_a_failure_while_building_puts_the_model_back(tmp_path, monkeypatch):
    folder = peft_folder(tmp_path)
    model = our_gpt(n_embd=32, vocab_size=64)
    before = copy.deepcopy(model.state_dict())

    def add_then_fail(*args, **kwargs):
        add_lora(*args, **kwargs)
        raise RuntimeError("disk full")
    monkeypatch.setattr(peft_format, "add_lora", add_then_fail)  # where load_peft_adapter looks it up
    with pytest.raises(RuntimeError, match="disk full"):
        load_peft_adapter(model, folder)
    assert not lora_layers(model) and not hasattr(model, "lora_config")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())


def test_adapters_peft_cannot_hold_are_refused(tmp_path):
    with pytest.raises(ValueError, match="DoRA"):
        save_peft_adapter(to_dora(add_lora(our_gpt(), ["q_proj"], r=2)), tmp_path)
    with pytest.raises(ValueError, match="add_lora"):
        save_peft_adapter(our_gpt(), tmp_path)
    assert not any(tmp_path.iterdir())


# ---- the activation option in our GPT ----

def test_gelu_option_is_kept_by_checkpoints_and_used_by_batched_serving(tmp_path):
    from lora_scratch.train import load_checkpoint, save_checkpoint

    assert "gelu_approximate" not in GPTConfig().to_dict() and "gelu" not in repr(GPTConfig())  # as before
    with pytest.raises(ValueError, match="gelu_approximate"):
        GPTConfig(gelu_approximate="erf")
    model = our_gpt(gelu_approximate="tanh")
    with torch.no_grad():
        for block in model.blocks:  # larger MLP activations and outputs, where the two GELUs differ visibly
            block.mlp.up_proj.weight.mul_(5)
            block.mlp.down_proj.weight.mul_(50)
    save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.config.gelu_approximate == "tanh"
    prompt = tokens(50, 12)[0]
    stack = AdapterStack(loaded, {})
    served = _prefill(loaded, stack, stack.slots([None])[0], BatchCache(loaded, 1), 0, prompt)
    with torch.no_grad():
        direct = loaded(prompt[None])[0][0, -1]
        exact = GPT(GPTConfig(**(loaded.config.to_dict() | {"gelu_approximate": "none"})))
        exact.load_state_dict(loaded.state_dict())
        other = exact.eval()(prompt[None])[0][0, -1]
    gap = (other - direct).abs().max().item()  # what the wrong GELU would change
    assert gap > 1e-5 and (served - direct).abs().max().item() < gap / 100


# ---- the shipped base and adapter: a trained model, whose logits are not small ----

def test_the_shipped_base_and_adapter_give_the_same_logits_in_transformers_and_peft(tmp_path):
    from lora_scratch import load_adapter
    from lora_scratch.data import data_dir, encode
    from lora_scratch.train import load_base

    base = load_base()
    idx = encode("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer")[None]
    assert diff(base, gpt_to_hf(base), idx) < TOL
    folio = load_adapter(load_base(), data_dir() / "adapters" / "folio")
    save_peft_adapter(folio, tmp_path)
    theirs = peft.PeftModel.from_pretrained(gpt_to_hf(base), tmp_path).eval()
    assert diff(folio, theirs, idx) < TOL
    assert diff(folio, base, idx) > 100 * TOL
    back = load_peft_adapter(load_base(), tmp_path)
    assert diff(folio, back, idx) == 0


def test_the_bitsandbytes_comparison_says_how_to_install_it_when_missing(monkeypatch, tmp_path):
    """scripts/compare_bnb_nf4.py (notebook 13 §6) needs bitsandbytes, which no extra installs: it must say so."""
    script = load_script("compare_bnb_nf4")
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes -> ImportError
    with pytest.raises(SystemExit, match="pip install bitsandbytes"):
        script.main(["--out", str(tmp_path / "bnb.json")])
    assert not (tmp_path / "bnb.json").exists()
