"""QLoRA vs LoRA on Folio: the same adapter on an NF4 base and on the fp32 base, several seeds.

    python scripts/qlora_vs_lora.py          # writes data/sweeps/qlora_vs_lora.json (resumable)

Both methods start from the shipped base (data/base.safetensors) with r = 2, alpha = 4 on all six projections
(the Folio adapter's setting), the same learning rate, steps, batches and seed; seed s also fixes A's random
init, which is identical for the two methods. QLoRA (Dettmers et al., 2023, §3) first stores the six
projections of every block in NF4 with double quantization (block 64, scales in blocks of 256) and dequantizes
them in every forward pass; LoRA keeps them in fp32. Two step counts: the notebook's short live run (20 steps,
which the notebook repeats live for seed 0) and notebook 07's 120 steps.

The JSON is rewritten after every run, and runs already in it are skipped. Deterministic per machine and
thread count.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere without installing the package

from lora_scratch.files import atomic_write_json  # noqa: E402
from lora_scratch.finetune import ALL_PROJECTIONS, FinetuneConfig, finetune, prepare, val_losses  # noqa: E402
from lora_scratch.lora import mark_only_lora_as_trainable  # noqa: E402
from lora_scratch.quant import add_qlora  # noqa: E402
from lora_scratch.train import load_base  # noqa: E402
from scripts.sweep_lora_vs_full import add_window_args, run_cli  # noqa: E402

COMMAND = "python scripts/qlora_vs_lora.py"
R, ALPHA, LR = 2, 4.0, 1.5e-2  # notebook 07's best LoRA learning rate for this adapter
METHODS = ("lora", "qlora")


def prepare_qlora(seed: int, targets=ALL_PROJECTIONS, r: int = R, alpha: float = ALPHA) -> torch.nn.Module:
    """The base with NF4 projections and a LoRA adapter; seeded after loading, exactly as finetune.prepare does,
    so A's init equals the LoRA run's."""
    model = load_base()
    torch.manual_seed(seed)
    add_qlora(model, list(targets), r=r, alpha=alpha)
    mark_only_lora_as_trainable(model)
    return model


def make_model(method: str, seed: int) -> torch.nn.Module:
    if method == "qlora":
        return prepare_qlora(seed)
    return prepare("lora", targets=ALL_PROJECTIONS, r=R, alpha=ALPHA, seed=seed)


def run_key(method: str, steps: int, seed: int) -> str:
    return f"{method}/steps={steps}/seed={seed}"


def sweep(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    template = FinetuneConfig(lr=args.lr, steps=0, batch_size=args.batch_size, block_size=args.block_size,
                              warmup=args.warmup, eval_windows=args.eval_windows)
    record.update(command=COMMAND, threads=torch.get_num_threads(), torch=torch.__version__,
                  machine=platform.machine(), adapter={"r": R, "alpha": ALPHA, "targets": list(ALL_PROJECTIONS)},
                  before=record.get("before") or val_losses(load_base(), template))
    for steps in args.steps:
        for seed in args.seeds:
            for method in METHODS:
                key = run_key(method, steps, seed)
                if key in record["runs"]:
                    continue
                cfg = FinetuneConfig(**{**template.__dict__, "steps": steps, "seed": seed,
                                        "eval_every": max(steps // 3, 1)})
                t0 = time.perf_counter()
                model = make_model(method, seed)  # its own "before": the NF4 base is not the fp32 base
                run = finetune(model, cfg, before=None if method == "qlora" else record["before"])
                record["runs"][key] = dict(run, method=method)
                atomic_write_json(out, record)  # after every run: an interrupted sweep keeps what it has
                print(f"{key:26s} folio {run['after']['folio_val']:.4f}  modern {run['after']['modern_val']:.4f}  "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return record


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", nargs="+", type=int, default=[20, 120])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--lr", type=float, default=LR)
    p.add_argument("--warmup", type=int, default=10)
    add_window_args(p, eval_every=False)
    p.add_argument("--out", default=str(ROOT / "data" / "sweeps" / "qlora_vs_lora.json"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    return run_cli(parse, sweep, argv)


if __name__ == "__main__":
    main()
