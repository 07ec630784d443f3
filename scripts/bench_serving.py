"""Serving many adapters: tokens per second, side by side in one run (notebook 12; issue 14).

    python scripts/bench_serving.py                    # the full run (a few minutes), writes data/bench/serving.json
    python scripts/bench_serving.py --new 4 --rounds 1 --out /tmp/s.json   # a smoke run

Eight requests (prompts of 16 to 72 bytes from the validation texts), each for its own adapter, decoded three ways:
  (a) swap     one request at a time: copy its adapter's A and B into the model (from memory, the cheapest swap),
               then GPT.generate, batch 1, with the KV cache;
  (b) batched  serve.generate_many: all requests in one batch, each row with its own gathered (A, B);
  (c) merged   one adapter merged into the base, the same requests in one batch through generate_many with no
               adapter: no LoRA work at all, the upper bound for (b).
Then how the ratios move with the number of adapters in the stack (1 .. 32, batch 8) and with the batch size
(1 .. 32, one adapter per request). Eight adapters are trained here (the three shipped ones plus five trained by this
script on the four corpora, 60 steps each, seeds 1-5); for 32, the extra ones are copies of them, since their values
do not change the cost. Greedy decoding (top_k=1): (a) and (b) give the same tokens, which is checked.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lora_scratch import bench, load_adapter, save_adapter  # noqa: E402
from lora_scratch.data import data_dir, load_text, load_tokens  # noqa: E402
from lora_scratch.files import atomic_write_json  # noqa: E402
from lora_scratch.finetune import prepare  # noqa: E402
from lora_scratch.lora import lora_layers  # noqa: E402
from lora_scratch.serve import AdapterStack, BatchCache, generate_many, merge_and_unload  # noqa: E402
from lora_scratch.train import TrainConfig, load_base, train  # noqa: E402

SHIPPED = ("folio", "milton", "sonnets")
TRAINED = [("modern", 1), ("folio", 2), ("milton", 3), ("sonnets", 4), ("modern", 5)]  # (corpus, seed)


def train_adapters(folder: Path, steps: int) -> dict[str, Path]:
    """The shipped adapters plus five trained here (all six projections, r = 2, as the shipped ones)."""
    adapters = {name: data_dir() / "adapters" / name for name in SHIPPED}
    for corpus, seed in TRAINED:
        model = prepare("lora", seed=seed)
        cfg = TrainConfig(steps=steps, batch_size=8, block_size=128, lr=5e-3, warmup=min(10, steps),
                          weight_decay=0.0, eval_every=10**9, seed=seed)
        train(model, load_tokens(corpus), cfg, progress=False)
        name = f"{corpus}-s{seed}"
        adapters[name] = save_adapter(model, folder / name, info={"trained_by": "scripts/bench_serving.py",
                                                                  "corpus": corpus, "steps": steps, "seed": seed})
    return adapters


def prompts(n: int) -> list[torch.Tensor]:
    text = load_text("modern", "val").encode("latin-1", errors="replace")
    lengths = [16 + (56 * i) // max(1, n - 1) for i in range(n)]  # 16 .. 72 bytes
    return [torch.tensor(list(text[1000 * i: 1000 * i + k]), dtype=torch.long) for i, k in enumerate(lengths)]


def candidates(base, stack: AdapterStack, adapters: dict, requests: list, new: int) -> dict:
    """The three ways to serve `requests`, as callables for bench.compare."""
    first = next(n for n, _ in requests if n is not None)
    swapped = load_adapter(load_base(), adapters[first]).eval()
    layers = lora_layers(swapped)
    factors = {name: {f"{m}.{k}": stack_slice(stack, name, m, k) for m in layers for k in ("lora_A", "lora_B")}
               for name in {n for n, _ in requests}}

    def swap():
        out = []
        for name, prompt in requests:
            with torch.no_grad():
                for key, value in factors[name].items():  # the cheapest swap: copy A and B from memory
                    module, attr = key.rsplit(".", 1)
                    getattr(layers[module], attr).copy_(value)
            out.append(swapped.generate(prompt.unsqueeze(0), new, top_k=1)[0])
        return out

    merged = merge_and_unload(load_adapter(load_base(), adapters[first]))
    plain = [(None, p) for _, p in requests]
    return {"(a) swap": swap,
            "(b) generate_many": lambda: generate_many(base, stack, requests, new, top_k=1),
            "(c) merged": lambda: generate_many(merged, {}, plain, new, top_k=1)}


def stack_slice(stack: AdapterStack, name: str, module: str, key: str) -> torch.Tensor:
    """An adapter's own A or B back out of the stack (zero padding removed)."""
    slot, r = stack.names.index(name), stack.ranks[name]
    return stack.A[module][slot, :r] if key == "lora_A" else stack.B[module][slot, :, :r]


def measure(base, adapters: dict, names: list, n_requests: int, new: int, rounds: int) -> dict:
    stack = AdapterStack(base, {n: adapters[n] for n in dict.fromkeys(names)})
    requests = [(names[i % len(names)], p) for i, p in enumerate(prompts(n_requests))]
    fns = candidates(base, stack, adapters, requests, new)
    a, b = fns["(a) swap"](), fns["(b) generate_many"]()
    assert all(torch.equal(x, y) for x, y in zip(a, b)), "swapping and generate_many must give the same tokens"
    timing = bench.compare(fns, rounds=rounds, warmup=1, threads=1)
    tokens = n_requests * new
    per_s = {k: tokens / t.median for k, t in timing.items()}
    return {"adapters": len(set(names)), "batch": n_requests, "new_tokens": new,
            "tokens_per_s": {k: round(v, 1) for k, v in per_s.items()},
            "b_over_a": round(per_s["(b) generate_many"] / per_s["(a) swap"], 2),
            "b_over_c": round(per_s["(b) generate_many"] / per_s["(c) merged"], 2)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--new", type=int, default=128, help="new tokens per request")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--train-steps", type=int, default=60, help="training steps of each extra adapter")
    p.add_argument("--out", type=Path, default=ROOT / "data" / "bench" / "serving.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    base = load_base().eval()
    with tempfile.TemporaryDirectory() as tmp:
        adapters = train_adapters(Path(tmp), args.train_steps)
        names = list(adapters)  # 8
        for i in range(24):  # 32 in all: copies under new names (their values do not change the cost)
            adapters[f"copy{i}"] = adapters[names[i % 8]]
        every = list(adapters)
        main_row = measure(base, adapters, names, 8, args.new, args.rounds)
        print(f"8 requests over 8 adapters, {args.new} new tokens each (tokens/s, 1 thread):", flush=True)
        for k, v in main_row["tokens_per_s"].items():
            print(f"  {k:20s} {v:8.1f}")
        print(f"  (b) / (a) = {main_row['b_over_a']:.2f}x    (b) / (c) = {main_row['b_over_c']:.2f}", flush=True)
        by_adapters, by_batch = [], [main_row]
        for n in (1, 2, 4, 8, 32):  # batch 8 (32 for 32 adapters): the stack grows, the batch does not
            row = main_row if n == 8 else measure(base, adapters, every[:n], max(8, n), args.new, args.rounds)
            by_adapters.append(row)
            print(f"adapters {n:2d}, batch {row['batch']:2d}: (b)/(a) {row['b_over_a']:5.2f}x  (b)/(c) "
                  f"{row['b_over_c']:.2f}", flush=True)
        for batch in (1, 2, 4, 16, 32):  # one adapter per request
            row = by_adapters[-1] if batch == 32 else measure(base, adapters, every[:batch], batch, args.new,
                                                              args.rounds)
            by_batch.append(row)
            print(f"batch {batch:2d} (one adapter each): (b)/(a) {row['b_over_a']:5.2f}x  (b)/(c) "
                  f"{row['b_over_c']:.2f}", flush=True)
        by_batch.sort(key=lambda r: r["batch"])
        stack = AdapterStack(base, {n: adapters[n] for n in names})
        cache = BatchCache(base, 1)
        kv_per_request = sum(t.numel() * t.element_size() for t in cache.k + cache.v)
    memory = {"adapter_bytes": stack.nbytes_per_adapter(), "kv_cache_bytes_per_request": kv_per_request,
              "base_bytes": sum(p.numel() * p.element_size() for p in base.parameters())}
    print(f"memory: one adapter {memory['adapter_bytes'] / 1e3:.0f} kB in the stack · one request's KV cache "
          f"({base.config.block_size} positions) {kv_per_request / 1e6:.2f} MB · the base "
          f"{memory['base_bytes'] / 1e6:.2f} MB")
    command = " ".join(["python scripts/bench_serving.py", *(argv if argv is not None else sys.argv[1:])])
    record = {"command": command,
              "main": main_row, "by_adapters": by_adapters, "by_batch": by_batch, "memory": memory,
              "threads": 1, "rounds": args.rounds, "train_steps": args.train_steps, "torch": torch.__version__,
              "machine": platform.machine(), "seconds": round(time.perf_counter() - started, 1)}
    atomic_write_json(args.out, record)
    return record


if __name__ == "__main__":
    main()
