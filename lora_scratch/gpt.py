"""A small GPT, read top to bottom (in the spirit of nanoGPT's model.py).

Pre-LayerNorm blocks; attention with separate q_proj, k_proj, v_proj, o_proj; an MLP with
up_proj and down_proj; the output head tied to the token embedding. Separate projections cost
the same parameters as one fused qkv matrix but let LoRA target each of W_q, W_k, W_v, W_o by
name, as in the LoRA paper (Hu et al., 2021, §4.2).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 256
    block_size: int = 256  # longest context the position embedding covers
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 192
    dropout: float = 0.0
    bias: bool = True
    gelu_approximate: str = "none"  # "none": exact GELU (our base); "tanh": GPT-2's approximation (Hendrycks & Gimpel)

    def __post_init__(self):
        if self.gelu_approximate not in ("none", "tanh"):
            raise ValueError(f"gelu_approximate must be 'none' (exact GELU) or 'tanh' (GPT-2's), "
                             f"got {self.gelu_approximate!r}")

    @classmethod
    def tiny(cls) -> GPTConfig:
        """The shipped base: a byte-level model small enough to pretrain on 2 CPU cores."""
        return cls(vocab_size=256, block_size=256, n_layer=6, n_head=5, n_embd=160)

    @classmethod
    def gpt2_small(cls) -> GPTConfig:
        """GPT-2 small's shapes (Radford et al., 2019): 124,439,808 parameters with the tied head."""
        return cls(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)

    def to_dict(self) -> dict:
        """The fields, without gelu_approximate when it is the default: checkpoints and printouts of the
        exact-GELU models read as they did before the field existed (and load in older versions)."""
        d = asdict(self)
        if d["gelu_approximate"] == "none":
            del d["gelu_approximate"]
        return d

    def __repr__(self) -> str:
        return f"GPTConfig({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd ({cfg.n_embd}) must be divisible by n_head ({cfg.n_head})")
        self.n_head = cfg.n_head
        self.q_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.k_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.v_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.o_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        hs = C // self.n_head
        # (B, T, C) -> (B, nh, T, hs): each head attends in its own hs-dimensional subspace
        q = self.q_proj(x).view(B, T, self.n_head, hs).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_head, hs).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_head, hs).transpose(1, 2)
        # softmax(q k^T / sqrt(hs)) v with the causal mask: token t sees tokens 0..t only
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.up_proj = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.down_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.gelu_approximate = cfg.gelu_approximate

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """GELU, exact or with GPT-2's tanh approximation; serve.py calls it too, so both compute the same."""
        return F.gelu(x, approximate=self.gelu_approximate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down_proj(self.act(self.up_proj(x))))  # (B, T, 4C) in the middle


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # pre-LN: normalise, transform, add back (the residual)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # tied: one (vocab, C) matrix reads and writes tokens
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx (B, T) token ids -> logits (B, T, vocab); with targets also the mean cross-entropy."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}; "
                             "crop the input to the last block_size tokens")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))  # targets may be a slice
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None,
                 use_cache: bool = True) -> torch.Tensor:
        """Sample max_new_tokens tokens after idx (B, T). Temperature < 1 sharpens the distribution.
        use_cache=True keeps each layer's keys and values (lora_scratch.kv_cache) and feeds only the newest token;
        use_cache=False runs the whole context at every step: the same tokens, far more work."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        was_training = self.training
        self.eval()
        if use_cache:
            from .kv_cache import CachedSteps

            next_logits = CachedSteps(self)  # feeds only the newest token once the prompt is cached
        else:
            def next_logits(idx):  # the whole context (its last block_size tokens) at every step
                return self(idx[:, -self.config.block_size:])[0]
        for _ in range(max_new_tokens):
            logits = next_logits(idx)[:, -1, :]  # (B, vocab): only the last position predicts
            idx = torch.cat([idx, sample_next(logits, temperature, top_k, generator)], dim=1)
        self.train(was_training)
        return idx


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from logits (B, vocab): divide by the temperature, keep the top_k largest, sample.
    Returns (B, 1) token ids. top_k=1 is greedy decoding."""
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
