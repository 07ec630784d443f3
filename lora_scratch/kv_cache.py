"""A key-value cache for generation (groundwork for notebook 12, serving; issue 14).

Without a cache, GPT.generate runs the whole context through the model for every new token, although only the
newest token's query is new: the keys and values of the earlier tokens come out the same every time. With a cache
each layer keeps them, shape (B, n_head, T_seen, head_size), and a step runs one token through the model:

    prefill    forward_cached(model, prompt, cache)       every prompt token, causal mask, fills the cache
    decode     forward_cached(model, last_token, cache)   one query against all cached keys, appends its k, v

The model's positions are learned and absolute (pos_emb has block_size rows). Once block_size tokens are cached
the window must slide, and every cached key would change position: CachedSteps (what GPT.generate(...,
use_cache=True) runs) then rebuilds the cache from the last block_size tokens, as the uncached path does at every
step. Up to block_size tokens a step costs one
token's worth of work; beyond it, a step costs what it costs without a cache. The tokens are the same either way
(tests/test_kv_cache.py: greedy decoding, base and LoRA models, inside and past the window).

The cache belongs to the weights that made it: an adapter on k_proj or v_proj makes different keys and values,
so a cache filled with one adapter cannot serve another.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .gpt import GPT, CausalSelfAttention


@dataclass
class LayerCache:
    k: torch.Tensor | None = None  # (B, n_head, T_seen, head_size)
    v: torch.Tensor | None = None


@dataclass
class KVCache:
    """One LayerCache per block: the keys and values of every token seen so far."""

    layers: list[LayerCache] = field(default_factory=list)

    @classmethod
    def empty(cls, model: GPT) -> KVCache:
        return cls([LayerCache() for _ in model.blocks])

    @property
    def length(self) -> int:
        k = self.layers[0].k if self.layers else None
        return 0 if k is None else k.shape[2]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.layers for t in (layer.k, layer.v) if t is not None)


def cached_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: LayerCache) -> torch.Tensor:
    """Attention of T new tokens given the cache: q, k, v (B, n_head, T, head_size) are the new tokens'; their
    k and v are appended to the cache, and new token i (at position past + i) sees keys 0 .. past + i.
    Returns (B, n_head, T, head_size). (Notebook 12's exercise.)"""
    if cache.k is not None:
        k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)  # (B, nh, past + T, hs)
    cache.k, cache.v = k, v
    T = q.shape[2]
    past = k.shape[2] - T
    if past == 0:  # the prompt: plain causal attention
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    # is_causal=True would align the mask top-left (new token 0 would see key 0 only): shift it by `past`
    mask = torch.ones(T, past + T, dtype=torch.bool, device=q.device).tril(diagonal=past)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def attention_step(attn: CausalSelfAttention, x: torch.Tensor, cache: LayerCache,
                   attend=cached_attention) -> torch.Tensor:
    """CausalSelfAttention on the new tokens x (B, T, C) given the cached keys and values; appends theirs."""
    B, T, C = x.shape
    hs = C // attn.n_head
    q = attn.q_proj(x).view(B, T, attn.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
    k = attn.k_proj(x).view(B, T, attn.n_head, hs).transpose(1, 2)
    v = attn.v_proj(x).view(B, T, attn.n_head, hs).transpose(1, 2)
    y = attend(q, k, v, cache)  # (B, nh, T, hs)
    return attn.o_proj(y.transpose(1, 2).contiguous().view(B, T, C))


def forward_cached(model: GPT, idx: torch.Tensor, cache: KVCache, attend=cached_attention) -> torch.Tensor:
    """Logits (B, T, vocab) of the new tokens idx (B, T), which follow the cache.length tokens already cached.
    `attend` is the attention given the cache (cached_attention; notebook 12 passes the learner's)."""
    B, T = idx.shape
    start = cache.length
    if start + T > model.config.block_size:
        raise ValueError(f"{start} cached + {T} new tokens exceed block_size {model.config.block_size}: the "
                         "positions are learned up to block_size; rebuild the cache from the last block_size tokens")
    pos = torch.arange(start, start + T, device=idx.device)
    x = model.drop(model.tok_emb(idx) + model.pos_emb(pos))  # (B, T, C)
    for block, layer_cache in zip(model.blocks, cache.layers):
        x = x + attention_step(block.attn, block.ln_1(x), layer_cache, attend)
        x = x + block.mlp(block.ln_2(x))
    return model.lm_head(model.ln_f(x))


class CachedSteps:
    """The logits GPT.generate needs at each step, from a cache: the whole prompt the first time, then only the
    newest token; once block_size tokens are cached the window slides and the cache is rebuilt (see above)."""

    def __init__(self, model: GPT):
        self.model, self.cache = model, None

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        block_size = self.model.config.block_size
        if self.cache is None or self.cache.length >= block_size:  # the first step, or the window slides
            self.cache = KVCache.empty(self.model)
            return forward_cached(self.model, idx[:, -block_size:], self.cache)
        return forward_cached(self.model, idx[:, -1:], self.cache)

