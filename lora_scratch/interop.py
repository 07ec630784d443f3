"""Our GPT and LoRA next to 🤗 transformers and PEFT (notebook 13): what you built is what they compute.

    hf = gpt_to_hf(base); gpt_from_hf(hf)            # a transformers GPT2LMHeadModel with our weights, and back
    save_peft_adapter(gpt, "folio_peft")              # then PeftModel.from_pretrained(gpt_to_hf(base), "folio_peft")
    load_peft_adapter(fresh_gpt, "a_peft_adapter")    # a PEFT LoRA for GPT-2, into our LoRA layers

GPT-2 keeps its projections in Conv1D layers, weight (in, out): the transpose of nn.Linear's (out, in), and fuses
W_q, W_k, W_v into one c_attn (in C, out 3C), whose column blocks are q, k and v (c_attn_to_qkv).

The one module that imports transformers, and only inside the functions that need it, so the rest of the package
stays from scratch. The LoRA side — c_attn's LoRA as three that share A, and PEFT's adapter files — is in
peft_format.py (pure tensors and files, neither library needed), re-exported here for notebook 13.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .gpt import GPT, GPTConfig
from .lora_layer import lora_layers
from .peft_format import compact_lora, fuse_qkv_lora, load_peft_adapter, save_peft_adapter, split_c_attn_lora

__all__ = ["c_attn_to_qkv", "compact_lora", "fuse_qkv_lora", "gpt_from_hf", "gpt_to_hf", "load_peft_adapter",
           "save_peft_adapter", "split_c_attn_lora"]

INSTALL = 'pip install -e ".[interop]"'
GELU = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}  # GPT-2's activation -> ours


def _transformers():
    try:
        import transformers
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        raise ImportError("lora_scratch.interop needs transformers (and peft for its notebook), the optional "
                          f"`interop` extra. From the repository root: {INSTALL}") from None
    return transformers, Conv1D


# ---- weights: GPT-2 <-> our GPT ----

def _weight_pairs(model: GPT, hf: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(ours, GPT-2's) pairs of views of the same shape, to copy either way. Conv1D weights are (in, out), so ours
    appear transposed; c_attn's columns are q, k, v. The heads are tied on both sides: nothing to copy."""
    t, C = hf.transformer, model.config.n_embd
    pairs = [(model.tok_emb.weight, t.wte.weight), (model.pos_emb.weight, t.wpe.weight),
             (model.ln_f.weight, t.ln_f.weight), (model.ln_f.bias, t.ln_f.bias)]
    for ours, theirs in zip(model.blocks, t.h, strict=True):
        for ln in ("ln_1", "ln_2"):
            pairs += [(getattr(ours, ln).weight, getattr(theirs, ln).weight),
                      (getattr(ours, ln).bias, getattr(theirs, ln).bias)]
        for i, proj in enumerate((ours.attn.q_proj, ours.attn.k_proj, ours.attn.v_proj)):
            cols = slice(i * C, (i + 1) * C)
            pairs += [(proj.weight.T, theirs.attn.c_attn.weight[:, cols]), (proj.bias, theirs.attn.c_attn.bias[cols])]
        for linear, conv in ((ours.attn.o_proj, theirs.attn.c_proj), (ours.mlp.up_proj, theirs.mlp.c_fc),
                             (ours.mlp.down_proj, theirs.mlp.c_proj)):
            pairs += [(linear.weight.T, conv.weight), (linear.bias, conv.bias)]
    return pairs


def _gpt2_problems(hf: nn.Module, Conv1D: type) -> list[str]:
    """What in a GPT2LMHeadModel our GPT cannot compute (empty: it fits)."""
    c = hf.config
    fits = [(c.activation_function in GELU, f"activation_function={c.activation_function!r} (ours: {', '.join(GELU)})"),
            (c.n_inner in (None, 4 * c.n_embd), f"n_inner={c.n_inner} (ours: 4 * n_embd = {4 * c.n_embd})"),
            (getattr(c, "scale_attn_weights", True), "scale_attn_weights=False (ours divides by sqrt(head size))"),
            (not getattr(c, "scale_attn_by_inverse_layer_idx", False), "scale_attn_by_inverse_layer_idx=True"),
            (not getattr(c, "add_cross_attention", False), "add_cross_attention=True (ours is decoder-only)"),
            (c.layer_norm_epsilon == 1e-5, f"layer_norm_epsilon={c.layer_norm_epsilon} (ours: 1e-5)"),
            (torch.equal(hf.lm_head.weight, hf.transformer.wte.weight), "an output head that is not its token "
             "embedding (tie_word_embeddings=False; ours is tied)")]
    problems = [why for ok, why in fits if not ok]
    wrapped = [n for n, m in hf.named_modules() if n.endswith(("c_attn", "c_proj", "c_fc")) and type(m) is not Conv1D]
    if wrapped:
        problems.append(f"{wrapped[0]} is a {type(hf.get_submodule(wrapped[0])).__name__}, not GPT-2's Conv1D (a PEFT "
                        "or quantized layer?): merge_and_unload() a PEFT model first, or load its adapter with "
                        "load_peft_adapter")
    return problems


def gpt_from_hf(hf_model: nn.Module) -> GPT:
    """Our GPT with the weights of a transformers GPT2LMHeadModel of any size; same logits in eval mode (fp32
    tolerance). GPT-2's gelu_new becomes gelu_approximate="tanh". Our one dropout rate is GPT-2's resid_pdrop."""
    transformers, Conv1D = _transformers()
    if not isinstance(hf_model, transformers.GPT2LMHeadModel):
        kind = getattr(getattr(hf_model, "config", None), "model_type", None)
        hint = (" It is a PEFT model: call merge_and_unload() for a plain one, or load its adapter into our GPT with "
                "load_peft_adapter." if hasattr(hf_model, "peft_config") else "")
        raise TypeError(f"gpt_from_hf takes a transformers GPT2LMHeadModel (GPT-2's layout), got "
                        f"{type(hf_model).__name__} (model_type {kind!r}).{hint}")
    problems = _gpt2_problems(hf_model, Conv1D)
    if problems:
        raise ValueError("this GPT-2 does not fit our GPT: " + "; ".join(problems))
    c = hf_model.config
    cfg = GPTConfig(vocab_size=c.vocab_size, block_size=c.n_positions, n_layer=c.n_layer, n_head=c.n_head,
                    n_embd=c.n_embd, dropout=float(c.resid_pdrop), bias=True,
                    gelu_approximate=GELU[c.activation_function])
    wte = hf_model.transformer.wte.weight
    model = GPT(cfg).to(device=wte.device, dtype=wte.dtype)
    with torch.no_grad():
        for ours, theirs in _weight_pairs(model, hf_model):
            ours.copy_(theirs)
    return model.eval()


def gpt_to_hf(model: GPT) -> nn.Module:
    """A transformers GPT2LMHeadModel (in eval mode) holding our GPT's weights; same logits (fp32 tolerance).
    A model with LoRA layers is refused: pass the base, and the adapter through save_peft_adapter."""
    transformers, _ = _transformers()
    if not isinstance(model, GPT):
        raise TypeError(f"gpt_to_hf takes our GPT, got {type(model).__name__}")
    if lora_layers(model):
        raise ValueError("this GPT has LoRA layers. Convert the base and save the adapter in PEFT's format: "
                         "PeftModel.from_pretrained(gpt_to_hf(base), path) after save_peft_adapter(model, path); "
                         "or fold the adapter in first with serve.merge_and_unload(model)")
    cfg = model.config
    if not cfg.bias:
        raise ValueError("GPT-2 has biases in every layer; this GPT was built with bias=False")
    act = "gelu_new" if cfg.gelu_approximate == "tanh" else "gelu"
    hf_cfg = transformers.GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd,
                                     n_layer=cfg.n_layer, n_head=cfg.n_head, activation_function=act,
                                     resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
                                     layer_norm_epsilon=1e-5, bos_token_id=None, eos_token_id=None,
                                     tie_word_embeddings=True)
    emb = model.tok_emb.weight
    hf = transformers.GPT2LMHeadModel(hf_cfg).to(device=emb.device, dtype=emb.dtype)
    with torch.no_grad():
        for ours, theirs in _weight_pairs(model, hf):
            theirs.copy_(ours)
    return hf.eval()


def c_attn_to_qkv(weight: torch.Tensor, bias: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """GPT-2's fused c_attn, a Conv1D with weight (C, 3C) = (in, out) and bias (3C,), as three pairs (W, b) in
    nn.Linear's layout, W (C, C) = (out, in), for q, k and v: the column blocks of weight, each transposed
    (notebook 13's exercise)."""
    C = weight.shape[0]
    return tuple((w.T.contiguous(), b.clone()) for w, b in zip(weight.split(C, dim=1), bias.split(C)))
