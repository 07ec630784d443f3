"""LoRA's speed claims on GPT-2-small shapes, measured side by side in one run (a script, not a test).

    python scripts/bench_lora.py                      # GPT-2 small: 12 layers, d = 768, vocab 50,257
    python scripts/bench_lora.py --n-layer 4          # fewer layers when time is short (printed)

Prints two ratios of medians from lora_scratch.bench (fixed threads, warm-up, interleaved rounds):
1. LoRA training step / full fine-tuning step. The LoRA paper (Hu et al., 2021, §4.2) reports 25 % less
   time per step on GPT-3 (32.5 -> 43.1 tokens/s per V100): a frozen weight's backward pass computes the
   gradient for its input but skips the gradient for the weight itself, and there is no Adam update for it.
2. merged-LoRA latency / base latency (forward pass, no grad): after merging, W0 + BA is one matrix of the
   same shape, so the ratio should be 1 within noise (LoRA §4.1, "no additional inference latency").
Also the unmerged-LoRA latency, which is *not* free: two extra small matmuls per adapted layer.
Weights are random (speed does not depend on their values); the data are random token ids.

Measured on the reference machine (2 shared CPU cores, 1 thread, 12 layers, LoRA r=4 on q_proj, v_proj,
torch 2.14): LoRA step / full step = 0.26 at 1 x 64 tokens and 0.56 at 1 x 512 tokens; merged / base latency
0.99 and 1.00; unmerged / base 1.03 and 1.02. With few tokens per step the full step is dominated by work per
*parameter* (the weight gradients, including the 38.6M-parameter tied embedding, and AdamW's update), which
LoRA skips; with more tokens the per-token compute both methods share takes over, and the ratio approaches
the compute-only 2/3 (forward + input gradient vs forward + input and weight gradients).

    python scripts/bench_lora.py --curve 64,128,256,512,1024   # the ratio across tokens per step

--curve measures forward, forward + backward and the whole step of both methods at each number of tokens per
step (interleaved, one run per size), splits the step into forward / backward / optimizer by differences of
medians, prints the compute-only bound beside the measured ratio, and writes data/bench/step_time_curve.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable

import torch

from lora_scratch.bench import compare, format_table, ratio
from lora_scratch.counting import count_params
from lora_scratch.gpt import GPT, GPTConfig
from lora_scratch.lora import add_lora, mark_only_lora_as_trainable
from lora_scratch.serve import merge_and_unload


def build(cfg: GPTConfig, targets: list[str], r: int, alpha: float) -> tuple[GPT, GPT]:
    """A full-fine-tune model and a LoRA model with the same base weights (seeded)."""
    torch.manual_seed(0)
    full = GPT(cfg)
    lora = GPT(cfg)
    lora.load_state_dict(full.state_dict())
    add_lora(lora, targets=targets, r=r, alpha=alpha)
    mark_only_lora_as_trainable(lora)
    for layer in (m for m in lora.modules() if hasattr(m, "lora_B")):
        torch.nn.init.normal_(layer.lora_B, std=0.02)  # a trained-looking B, so merging changes W
    return full, lora


def train_step_fn(model: GPT, idx: torch.Tensor, phase: str = "step") -> Callable[[], None]:
    """One AdamW step on whatever is trainable (the same loop for both methods). phase "forward" stops after
    the loss, "backward" after loss.backward(), "step" runs the optimizer too (to split a step into its parts)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.0)
    x, y = idx[:, :-1].contiguous(), idx[:, 1:].contiguous()  # (B, T) each

    def step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        if phase == "forward":
            return
        loss.backward()
        if phase == "step":
            opt.step()
    return step


def matmul_flops(model: GPT, tokens: int, lora: bool) -> float:
    """Compute-only FLOPs of one step's weight matmuls: forward 2 N T; backward 2 N T for the input gradient
    plus, for every trained matrix, 2 N T for its weight gradient. LoRA trains none of the big matrices, so it
    skips the weight-gradient GEMMs: (2 + 2) / (2 + 4) = 2/3 of full fine-tuning's matmul work. Attention's
    T x T products, the optimizer and per-op overhead are left out: this is a bound, not a prediction."""
    big = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "lora_" not in n
              and "pos_emb" not in n)  # the embedding is read as the tied head's matmul
    small = count_params(model, trainable_only=True) if lora else 0
    per_token = 2 * big + 2 * big + (0 if lora else 2 * big) + 6 * small
    return float(per_token * tokens)


def step_time_curve(cfg: GPTConfig, sizes: list[int], r: int, rounds: int, threads: int) -> list[dict]:
    """LoRA step / full step at each number of tokens per step, with its forward / backward / optimizer parts."""
    full, lora = build(cfg, ["q_proj", "v_proj"], r, 2.0 * r)
    rows = []
    for tokens in sizes:
        seq = min(tokens, 256)
        batch = tokens // seq
        idx = torch.randint(0, cfg.vocab_size, (batch, seq + 1), generator=torch.Generator().manual_seed(0))
        fns = {f"{name} {phase}": train_step_fn(model, idx, phase) for name, model in (("full", full), ("lora", lora))
               for phase in ("forward", "backward", "step")}
        t = {k: v.median for k, v in compare(fns, rounds=rounds, warmup=1, threads=threads, grad=True).items()}
        row = {"tokens": tokens, "batch": batch, "seq": seq}
        for name in ("full", "lora"):
            row[name] = {"forward_ms": round(1e3 * t[f"{name} forward"], 1),
                         "backward_ms": round(1e3 * (t[f"{name} backward"] - t[f"{name} forward"]), 1),
                         "optimizer_ms": round(1e3 * (t[f"{name} step"] - t[f"{name} backward"]), 1),
                         "step_ms": round(1e3 * t[f"{name} step"], 1)}
        row["lora_over_full_step"] = round(t["lora step"] / t["full step"], 3)
        row["compute_only_bound"] = round(matmul_flops(lora, tokens, True) / matmul_flops(full, tokens, False), 3)
        rows.append(row)
        print(f"{tokens:5d} tokens ({batch} x {seq}): full {row['full']}  lora {row['lora']}  "
              f"LoRA/full {row['lora_over_full_step']:.2f} (compute-only bound {row['compute_only_bound']:.2f})",
              flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-layer", type=int, default=12)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--targets", default="q_proj,v_proj")
    p.add_argument("--r", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="1: stable timings on a shared CPU")
    p.add_argument("--curve", help="comma-separated tokens per step, e.g. 64,128,256,512,1024: the step-time curve")
    p.add_argument("--out", default="data/bench/step_time_curve.json", help="where --curve writes its JSON")
    args = p.parse_args(argv)
    cfg = GPTConfig.gpt2_small()
    cfg.n_layer = args.n_layer
    if args.curve:
        sizes = [int(v) for v in args.curve.split(",")]
        start = time.perf_counter()
        rows = step_time_curve(cfg, sizes, args.r, args.rounds, args.threads)
        record = {"command": "python scripts/bench_lora.py --curve " + args.curve + f" --rounds {args.rounds} "
                             f"--threads {args.threads} --n-layer {args.n_layer}",
                  "setting": {"n_layer": cfg.n_layer, "d": cfg.n_embd, "vocab": cfg.vocab_size, "r": args.r,
                              "targets": ["q_proj", "v_proj"], "rounds": args.rounds, "threads": args.threads,
                              "torch": torch.__version__},
                  "rows": rows, "seconds": round(time.perf_counter() - start)}
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
        print(f"wrote {args.out}")
        return
    full, lora = build(cfg, args.targets.split(","), args.r, 2.0 * args.r)
    idx = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1), generator=torch.Generator().manual_seed(0))
    n_full = sum(p.numel() for p in full.parameters())
    n_lora = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    print(f"GPT-2-small shapes with {cfg.n_layer} of 12 layers: {n_full:,} parameters; LoRA r={args.r} on "
          f"{args.targets}: {n_lora:,} trainable; batch {args.batch} x {args.seq} tokens; {args.threads} threads; "
          f"{args.rounds} interleaved rounds after 1 warm-up; torch {torch.__version__}")
    start = time.perf_counter()
    steps = compare({"full fine-tune step": train_step_fn(full, idx), "LoRA step": train_step_fn(lora, idx)},
                    rounds=args.rounds, warmup=1, threads=args.threads, grad=True)
    print("\n" + format_table(steps, baseline="full fine-tune step"))
    full.eval()
    lora.eval()
    x = idx[:, :-1]
    fwd = {"base forward": lambda: full(x), "unmerged LoRA forward": lambda: lora(x)}
    merged_lora = merge_and_unload(copy.deepcopy(lora))  # W0 + (alpha/r) BA, plain Linear layers again
    fwd["merged LoRA forward"] = lambda: merged_lora(x)
    lat = compare(fwd, rounds=3 * args.rounds, warmup=1, threads=args.threads)
    print("\n" + format_table(lat, baseline="base forward"))
    print(f"\nLoRA step / full fine-tune step      = {ratio(steps, 'LoRA step', 'full fine-tune step'):.2f}"
          "   (LoRA paper, GPT-3 on V100s: 32.5 / 43.1 = 0.75)")
    print(f"merged LoRA latency / base latency   = {ratio(lat, 'merged LoRA forward', 'base forward'):.2f}")
    print(f"unmerged LoRA latency / base latency = {ratio(lat, 'unmerged LoRA forward', 'base forward'):.2f}")
    print(f"({time.perf_counter() - start:.0f} s of measurement)")


if __name__ == "__main__":
    main()
