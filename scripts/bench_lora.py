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
"""
from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch

from lora_scratch.bench import compare, format_table, ratio
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


def train_step_fn(model: GPT, idx: torch.Tensor) -> Callable[[], None]:
    """One AdamW step on whatever is trainable (the same loop for both methods)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.0)

    def step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        opt.step()
    return step


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-layer", type=int, default=12)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--targets", default="q_proj,v_proj")
    p.add_argument("--r", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="1: stable timings on a shared CPU")
    args = p.parse_args(argv)
    cfg = GPTConfig.gpt2_small()
    cfg.n_layer = args.n_layer
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
