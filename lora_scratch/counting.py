"""Counting parameters: a Linear layer, its LoRA update, a whole GPT, and LoRA budgets.

    linear_params(768, 768, bias=False) = 589,824      lora_params(768, 768, r=4) = 6,144 (1.04 %)
    gpt_params(GPTConfig.gpt2_small())  = 124,439,808  (163,037,184 if the head were not tied)

The GPT formulas follow lora_scratch.gpt.GPT exactly: token + position embeddings; per block ln_1,
q/k/v/o projections (C -> C), ln_2, up_proj (C -> 4C) and down_proj (4C -> C), all with bias when
cfg.bias; a final ln_f; lm_head tied to the token embedding. The LoRA paper's budget formula
|Θ| = 2 · L̂ · d_model · r (Hu et al., 2021) is the special case of (d_in + d_out) · r for square matrices.
"""
from __future__ import annotations

import numbers

import torch.nn as nn

from .gpt import GPTConfig

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("up_proj", "down_proj")
TARGETS = ATTENTION + MLP  # every Linear of a block: the names add_lora(targets=...) accepts
COMPONENTS = ("token embedding", "position embedding", "attention", "MLP", "layer norms", "head")


def linear_params(d_in: int, d_out: int, bias: bool = True) -> int:
    """A Linear layer y = W x + b stores W (d_out, d_in) and b (d_out,)."""
    return d_in * d_out + (d_out if bias else 0)


def lora_params(d_in: int, d_out: int, r: int) -> int:
    """LoRA's A (r, d_in) and B (d_out, r): (d_in + d_out) * r numbers (Hu et al., 2021, §4.1)."""
    return (d_in + d_out) * r


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Numbers stored in the model's parameters; a tied weight (lm_head = tok_emb) counts once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ---------------------------------------------------------------------------------------------
# A GPT, component by component
# ---------------------------------------------------------------------------------------------

def layernorm_params(d: int, bias: bool = True) -> int:
    """LayerNorm keeps a scale γ (d,) and, with bias, a shift β (d,)."""
    return d * (2 if bias else 1)


def projection_shapes(cfg: GPTConfig) -> dict[str, tuple[int, int]]:
    """(d_in, d_out) of every Linear in one block, in nn.Linear(in, out) order."""
    C = cfg.n_embd
    return {"q_proj": (C, C), "k_proj": (C, C), "v_proj": (C, C), "o_proj": (C, C),
            "up_proj": (C, 4 * C), "down_proj": (4 * C, C)}  # the MLP widens to 4C and back


def block_matrices(cfg: GPTConfig) -> list[tuple[str, tuple[int, ...]]]:
    """Anatomy of one block: each parameter's name and shape as PyTorch stores it (Linear: (out, in)).

    The order is the one `Block.named_parameters()` uses, so the list can be compared directly.
    """
    C, b = cfg.n_embd, cfg.bias

    def norm(name: str) -> list[tuple[str, tuple[int, ...]]]:
        return [(f"{name}.weight", (C,))] + ([(f"{name}.bias", (C,))] if b else [])

    def linears(group: str, names: tuple[str, ...]) -> list[tuple[str, tuple[int, ...]]]:
        rows = []
        for name in names:
            d_in, d_out = projection_shapes(cfg)[name]
            rows += [(f"{group}.{name}.weight", (d_out, d_in))] + ([(f"{group}.{name}.bias", (d_out,))] if b else [])
        return rows

    return norm("ln_1") + linears("attn", ATTENTION) + norm("ln_2") + linears("mlp", MLP)


def block_params(d: int, bias: bool = True) -> int:
    """One pre-LN block of width d: 2 LayerNorms, 4 attention projections (d x d), MLP d -> 4d -> d."""
    attention = 4 * linear_params(d, d, bias)
    mlp = linear_params(d, 4 * d, bias) + linear_params(4 * d, d, bias)
    return 2 * layernorm_params(d, bias) + attention + mlp


def gpt_param_breakdown(cfg: GPTConfig, tied: bool = True) -> dict[str, int]:
    """Parameters of GPT(cfg) by component (keys: COMPONENTS). The head is 0 when tied to tok_emb."""
    C, L, b = cfg.n_embd, cfg.n_layer, cfg.bias
    shapes = projection_shapes(cfg)
    return {
        "token embedding": cfg.vocab_size * C,
        "position embedding": cfg.block_size * C,  # learned: one vector per position, GPT-2 style
        "attention": L * sum(linear_params(*shapes[n], bias=b) for n in ATTENTION),
        "MLP": L * sum(linear_params(*shapes[n], bias=b) for n in MLP),
        "layer norms": (2 * L + 1) * layernorm_params(C, b),  # ln_1, ln_2 per block, plus ln_f
        "head": 0 if tied else linear_params(C, cfg.vocab_size, bias=False),  # tied: reuses tok_emb
    }


def gpt_params(cfg: GPTConfig, tied: bool = True) -> int:
    """Total parameters of GPT(cfg); gpt_params(GPTConfig.gpt2_small()) == 124,439,808."""
    return sum(gpt_param_breakdown(cfg, tied).values())


def component_of(name: str) -> str:
    """Which component a parameter name of GPT belongs to ('LoRA' for lora_A / lora_B)."""
    if ".lora_" in name:
        return "LoRA"
    for prefix, component in (("tok_emb", "token embedding"), ("pos_emb", "position embedding"),
                              ("lm_head", "head"), ("ln_f", "layer norms")):
        if name.startswith(prefix):
            return component
    for part, component in ((".attn.", "attention"), (".mlp.", "MLP"), (".ln_", "layer norms")):
        if part in name:
            return component
    raise ValueError(f"parameter {name!r} belongs to no known component of lora_scratch.gpt.GPT")


def measured_breakdown(model: nn.Module) -> dict[str, int]:
    """count_params by component, read from the model's own named parameters (tied ones once)."""
    counts = dict.fromkeys(COMPONENTS, 0)
    for name, p in model.named_parameters():  # named_parameters() skips the tied lm_head.weight
        component = component_of(name)
        counts[component] = counts.get(component, 0) + p.numel()
    return counts


# ---------------------------------------------------------------------------------------------
# LoRA budgets
# ---------------------------------------------------------------------------------------------

def lora_budget(cfg: GPTConfig, targets: list[str] | tuple[str, ...] | str, r: int) -> int:
    """Trainable parameters of add_lora(GPT(cfg), targets, r): every block, (d_in + d_out) · r per matrix."""
    if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r <= 0:
        raise ValueError(f"r (the rank) must be a positive integer such as 4 or 8, got {r!r}")
    targets = [targets] if isinstance(targets, str) else list(targets)
    shapes = projection_shapes(cfg)
    unknown = [t for t in targets if t not in shapes]
    if unknown or not targets:
        raise ValueError(f"targets {unknown or targets!r} name no Linear of a block; choose from "
                         f"{', '.join(TARGETS)} (lm_head is tied to the embedding and is not adapted)")
    per_block = sum(lora_params(*shapes[t], r) for t in dict.fromkeys(targets))  # a name counts once
    return cfg.n_layer * per_block


def lora_theta(d_model: int, n_matrices: int, r: int) -> int:
    """The LoRA paper's |Θ| = 2 · L̂ · d_model · r, L̂ = number of adapted (square) weight matrices."""
    return 2 * n_matrices * d_model * r


# ---------------------------------------------------------------------------------------------
# Model presets (shapes only; nothing here allocates weights)
# ---------------------------------------------------------------------------------------------

def _gpt2(n_layer: int, n_head: int, n_embd: int) -> GPTConfig:
    return GPTConfig(vocab_size=50257, block_size=1024, n_layer=n_layer, n_head=n_head, n_embd=n_embd)


def gpt3_175b() -> GPTConfig:
    """GPT-3 175B's shapes in our GPT: d_model 12,288 and 96 layers (as in Hu et al., 2021, §4.2),
    96 heads, context 2,048, GPT-2's 50,257-token vocabulary. GPT-3's sparse attention layers have
    the same weights, so the count is unaffected; vocabulary and context are < 0.4 % of the total."""
    return GPTConfig(vocab_size=50257, block_size=2048, n_layer=96, n_head=96, n_embd=12288)


PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig.tiny(),
    "gpt2_small": GPTConfig.gpt2_small(),
    "gpt2_medium": _gpt2(24, 16, 1024),
    "gpt2_large": _gpt2(36, 20, 1280),
    "gpt2_xl": _gpt2(48, 25, 1600),
    "gpt3_175b": gpt3_175b(),
}

# The LoRA paper's GPT-3 settings (Hu et al., 2021, Table 4 / §4.2): (targets, r).
GPT3_SETTINGS: dict[str, tuple[tuple[str, ...], int]] = {
    "4.7M: W_q, W_v at r = 1": (("q_proj", "v_proj"), 1),
    "4.7M: W_v alone at r = 2": (("v_proj",), 2),
    "37.7M: W_q, W_v at r = 8": (("q_proj", "v_proj"), 8),
    "37.7M: all four attention at r = 4": (ATTENTION, 4),
    "App. D.4's 'all four at r = 2' (a typo: 18.9M)": (ATTENTION, 2),
    "the 35 MB checkpoint: W_q, W_v at r = 4": (("q_proj", "v_proj"), 4),
}


def gpt3_budgets() -> dict[str, int]:
    """Trainable parameters of each GPT3_SETTINGS entry, from lora_budget (which equals lora_theta)."""
    cfg = PRESETS["gpt3_175b"]
    return {name: lora_budget(cfg, targets, r) for name, (targets, r) in GPT3_SETTINGS.items()}


def checkpoint_bytes(n_params: int, bytes_per_param: int = 2) -> int:
    """Bytes to store n_params numbers (2 for fp16/bf16, 4 for fp32), ignoring file headers."""
    return n_params * bytes_per_param


GB = 10**9  # storage vendors and the LoRA paper count in decimal gigabytes; a GiB is 2**30 bytes


def checkpoint_gb(n_params: float, bits_per_param: float) -> float:
    """Size of a checkpoint in GB (10**9 bytes): n_params numbers of bits_per_param bits, 8 bits a byte."""
    return n_params * bits_per_param / 8 / GB
