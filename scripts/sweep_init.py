"""Init[A] against Init[B] on notebook 05's planted problem, across widths (notebook 05, section 2).

    python scripts/sweep_init.py          # writes data/sweeps/init_ab.json (about 10 min on 1 CPU thread)

Hayou, Ghosh and Yu (2024, arXiv 2406.08447) compare the two ways to start LoRA at B A = 0: A random and B = 0
(Init[A], the paper's and PEFT's default) or A = 0 and B random (Init[B]). Their analysis is about width: as the
layer gets wider, Init[A] tolerates larger learning rates and learns more efficiently, Init[B] stays stable
but learns less. Here: a frozen d x d layer with a planted rank-4 update (lora_scratch.toy.planted_problem,
n = max(256, d) orthogonal inputs), LoRA at r = 4 (alpha = r), full-batch Adam for --steps steps, over a grid of
learning rates 2^k, for each width, start and seed. The seed draws the problem and the random factor. The JSON
holds the final loss of every run and the loss at the start (the same for both: B A = 0), and the loss curve of
each width's best learning rate (seed 0).
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere without installing the package

from lora_scratch.files import atomic_write_json  # noqa: E402
from lora_scratch.toy import INITS, fit_lora, planted_problem  # noqa: E402

COMMAND = "python scripts/sweep_init.py"


def sweep(args: argparse.Namespace) -> dict:
    lrs = [2.0 ** k for k in range(args.lr_log2[0], args.lr_log2[1] + 1)]
    runs, curves = {}, {}
    for d in args.widths:
        for seed in args.seeds:
            problem = planted_problem(d=d, n=max(256, d), seed=seed)
            for init in INITS:
                t0 = time.perf_counter()
                results = [fit_lora(problem, args.r, steps=args.steps, lr=lr, seed=seed, init=init)[1] for lr in lrs]
                finals = [losses[-1] if math.isfinite(losses[-1]) else None for losses in results]
                runs[f"d={d}/init={init}/seed={seed}"] = {"start": results[0][0], "final": finals}
                if seed == args.seeds[0]:
                    best = min(range(len(lrs)), key=lambda i: math.inf if finals[i] is None else finals[i])
                    curves[f"d={d}/init={init}"] = {"lr": lrs[best], "loss": results[best]}
                print(f"d={d:5d} init={init} seed={seed}  best final {min(f for f in finals if f is not None):.2e}  "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
    settings = {"widths": args.widths, "seeds": args.seeds, "r": args.r, "alpha": args.r, "steps": args.steps,
                "lrs": lrs, "s": [float(v) for v in planted_problem(d=8, n=8).s]}
    return {"command": " ".join([COMMAND, *args.argv]), "settings": settings, "runs": runs, "curves": curves,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", nargs="+", type=int, default=[64, 128, 256, 512, 1024])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--r", type=int, default=4)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr-log2", nargs=2, type=int, default=[-12, -2], help="the grid 2^k for k from .. to")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "data" / "sweeps" / "init_ab.json"))
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    record = sweep(args)
    atomic_write_json(Path(args.out), record)
    print(f"{len(record['runs'])} runs in {args.out}; {time.perf_counter() - start:.0f} s")
    return record


if __name__ == "__main__":
    main()
