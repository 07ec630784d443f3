"""How much the KV cache saves (lora_scratch.kv_cache; issue 14): tokens per second with and without it.

    python scripts/bench_kv_cache.py              # prints the table and writes data/bench/kv_cache.json

The shipped base generates --new tokens after prompts of several lengths (prompt + new <= block_size, inside the
window where the cache is kept), with and without the cache, timed in interleaved rounds (lora_scratch.bench,
median), greedy decoding, 1 thread. The two paths give the same tokens, which the script checks before timing.
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
from lora_scratch.train import load_base  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--new", type=int, default=200, help="new tokens per generation")
    p.add_argument("--prompts", nargs="+", type=int, default=[8, 24, 56], help="prompt lengths")
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
    record = {"command": " ".join(["python scripts/bench_kv_cache.py", *(argv or sys.argv[1:])]), "rows": rows,
              "threads": 1, "rounds": args.rounds, "torch": torch.__version__, "machine": platform.machine()}
    atomic_write_json(args.out, record)
    return record


if __name__ == "__main__":
    main()
