"""How much the KV cache saves (lora_scratch.kv_cache; issue 14): tokens per second with and without it.

    python scripts/bench_kv_cache.py              # prints the table and writes data/bench/kv_cache.json

The shipped base generates --new tokens after prompts of several lengths (prompt + new <= block_size, inside the
window where the cache is kept), with and without the cache, timed in interleaved rounds (lora_scratch.bench,
median), greedy decoding, 1 thread. The two paths give the same tokens, which the script checks before timing.
Then the curve against context length: one decode step with L tokens cached (forward_cached on one token, the
cache cut back to L after each call) against the uncached forward of all L + 1 tokens, for L in --contexts.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lora_scratch import bench  # noqa: E402
from lora_scratch.files import atomic_write_json  # noqa: E402
from lora_scratch.kv_cache import KVCache, forward_cached  # noqa: E402
from lora_scratch.train import load_base  # noqa: E402


def one_step(model, L: int) -> dict:
    """The two ways to get the logits of token L + 1 after L tokens, as callables for bench.compare."""
    idx = torch.randint(0, model.config.vocab_size, (1, L + 1), generator=torch.Generator().manual_seed(L))
    cache = KVCache.empty(model)
    with torch.no_grad():
        forward_cached(model, idx[:, :L], cache)
    kept = [(layer.k, layer.v) for layer in cache.layers]

    def cached_step():
        for layer, (k, v) in zip(cache.layers, kept):  # back to L cached tokens (the old tensors, no copy)
            layer.k, layer.v = k, v
        return forward_cached(model, idx[:, L:], cache)

    return {"no cache": lambda: model(idx)[0], "KV cache": cached_step}


def step_curve(model, contexts: list[int], rounds: int) -> list[dict]:
    """One new token after L tokens: with the cache (one token through the model) and without (all L + 1)."""
    rows = []
    for L in contexts:
        if L + 1 > model.config.block_size:
            raise SystemExit(f"context {L} + 1 exceeds block_size {model.config.block_size}")
        fns = one_step(model, L)
        with torch.no_grad():
            torch.testing.assert_close(fns["KV cache"]()[:, -1], fns["no cache"]()[:, -1], atol=1e-4, rtol=1e-4)
        timing = bench.compare(fns, rounds=rounds, warmup=1, repeat=5, threads=1)
        rows.append({"context": L, "median_ms": {k: t.median * 1e3 for k, t in timing.items()},
                     "speedup": bench.ratio(timing, "no cache", "KV cache")})
        print(f"one step after {L:3d} tokens: no cache {rows[-1]['median_ms']['no cache']:.2f} ms, KV cache "
              f"{rows[-1]['median_ms']['KV cache']:.2f} ms -> {rows[-1]['speedup']:.1f}x", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--new", type=int, default=200, help="new tokens per generation")
    p.add_argument("--prompts", nargs="+", type=int, default=[8, 24, 56], help="prompt lengths")
    p.add_argument("--contexts", nargs="+", type=int, default=[8, 32, 64, 128, 192, 255],
                   help="context lengths L of the one-step curve (L + 1 <= block_size)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "data" / "bench" / "kv_cache.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load_base().eval()
    rows = []
    for length in args.prompts:
        if length + args.new > model.config.block_size:
            raise SystemExit(f"prompt {length} + {args.new} new tokens exceed block_size {model.config.block_size}")
        prompt = torch.randint(0, model.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(0))
        fns = {"no cache": lambda p=prompt: model.generate(p, args.new, top_k=1, use_cache=False),
               "KV cache": lambda p=prompt: model.generate(p, args.new, top_k=1, use_cache=True)}
        assert torch.equal(fns["no cache"](), fns["KV cache"]()), "the two paths must give the same tokens"
        timing = bench.compare(fns, rounds=args.rounds, warmup=1, threads=1)
        speedup = bench.ratio(timing, "no cache", "KV cache")
        rows.append({"prompt": length, "new": args.new, "context_at_end": length + args.new,
                     "median_s": {k: t.median for k, t in timing.items()}, "speedup": speedup})
        print(f"prompt {length:3d} + {args.new} new: no cache {timing['no cache'].median:.2f} s, KV cache "
              f"{timing['KV cache'].median:.2f} s -> {speedup:.1f}x", flush=True)
    steps = step_curve(model, args.contexts, args.rounds)
    record = {"command": " ".join(["python scripts/bench_kv_cache.py", *(argv or sys.argv[1:])]), "rows": rows,
              "steps": steps,
              "threads": 1, "rounds": args.rounds, "torch": torch.__version__, "machine": platform.machine()}
    atomic_write_json(args.out, record)
    return record


if __name__ == "__main__":
    main()
