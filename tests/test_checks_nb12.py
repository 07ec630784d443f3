"""Checkers of 12_serving_many_adapters: each typical way to get the cached attention step wrong gets its hint."""
import torch
import torch.nn.functional as F
from checklib import generic_tests

from lora_scratch import checks
from lora_scratch.kv_cache import cached_attention
from lora_scratch.serve import lora_rows


def _append(cache, k, v, dim=2):
    if cache.k is not None:
        k, v = torch.cat([cache.k, k], dim=dim), torch.cat([cache.v, v], dim=dim)
    cache.k, cache.v = k, v
    return k, v


def top_left(q, k, v, cache):  # is_causal=True at every step
    k, v = _append(cache, k, v)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def no_mask(q, k, v, cache):
    k, v = _append(cache, k, v)
    return F.scaled_dot_product_attention(q, k, v)


def tril_no_shift(q, k, v, cache):
    k, v = _append(cache, k, v)
    mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril()
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def forgets_to_store(q, k, v, cache):
    if cache.k is not None:
        k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def wrong_dim(q, k, v, cache):
    _append(cache, k, v, dim=-1)
    return F.scaled_dot_product_attention(q, cache.k[..., : q.shape[-1]], cache.v[..., : q.shape[-1]],
                                          is_causal=True)


def new_first(q, k, v, cache):  # the new keys before the cached ones
    if cache.k is not None:
        k, v = torch.cat([k, cache.k], dim=2), torch.cat([v, cache.v], dim=2)
    cache.k, cache.v = k, v
    past = k.shape[2] - q.shape[2]
    mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril(diagonal=past)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def only_new_keys(q, k, v, cache):  # stores the cache but attends only to the new tokens
    _append(cache, k, v)
    return F.scaled_dot_product_attention(q, k[:, :, -q.shape[2]:], v[:, :, -q.shape[2]:], is_causal=True)


def merged_heads(q, k, v, cache):  # returns (B, T, C)
    out = cached_attention(q, k, v, cache)
    return out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)


def rows_loop_no_scaling(x, A, B, scaling, slots):
    return torch.stack([x[i] @ A[k].T @ B[k].T for i, k in enumerate(slots.tolist())])


def rows_one_scaling(x, A, B, scaling, slots):  # the first adapter's scaling for every row
    return scaling[1] * (x @ A[slots].transpose(1, 2) @ B[slots].transpose(1, 2))


def rows_first_adapter(x, A, B, scaling, slots):
    k = slots[0]
    return scaling[k] * (x @ A[k].T @ B[k].T)


def rows_untransposed(x, A, B, scaling, slots):
    return scaling[slots].view(-1, 1, 1) * (x @ A[slots] @ B[slots])


def rows_scaled_in_place(x, A, B, scaling, slots):
    A *= scaling.view(-1, 1, 1)
    return x @ A[slots].transpose(1, 2) @ B[slots].transpose(1, 2)


def rows_plus_base(x, A, B, scaling, slots):  # (batch, T, out) but the loop over rows forgot T
    return lora_rows(x, A, B, scaling, slots)[:, :1]


CASES = {
    checks.check_cached_attention: {
        "reference": cached_attention,
        "mistakes": [
            (top_left, "aligns that mask to the top-left corner"),
            (no_mask, "right for one new token"),
            (tril_no_shift, ".tril(diagonal=past)"),
            (forgets_to_store, "the cache is still empty"),
            (wrong_dim, "concatenate along dim=2"),
            (new_first, "the cached ones first, then the new ones"),
            (only_new_keys, "each new token must attend to all cached keys"),
            (merged_heads, "one row per new token"),
            (lambda q, k, v, cache: None, "return the attention output"),
        ],
    },
    checks.check_lora_rows: {
        "reference": lora_rows,
        "mistakes": [
            (rows_loop_no_scaling, "you left out the scaling"),
            (rows_one_scaling, "every row got one scaling"),
            (rows_first_adapter, "every row used the first row's adapter"),
            (rows_untransposed, "the shapes do not fit"),
            (rows_scaled_in_place, "changed its inputs in place"),
            (rows_plus_base, "one row per request"),
            (lambda x, A, B, scaling, slots: [1.0], "return a tensor"),
        ],
    },
}

test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)
