"""Learning vs forgetting: LoRA and full fine-tuning on Folio across learning rates and seeds.

    python scripts/sweep_lora_vs_full.py          # writes data/sweeps/lora_vs_full.json (resumable)

Every run starts from the shipped base (data/base.safetensors), trains on the Folio plays with the
course's one training loop, and records the Folio and modern validation losses every `eval_every`
steps. LoRA: r = 2, alpha = 4 on all six projections (the shipped Folio adapter's setting). Full: every
weight. Weight decay 0 for both. Each method gets its own learning rates (alpha acts like a learning-rate
multiplier under Adam, so LoRA's good range sits much higher than full fine-tuning's).

Learning = Folio loss gained (before − after); forgetting = modern loss lost (after − before).
"Forgets less" only counts at equal learning (Biderman et al., 2024, arXiv 2405.09673).

Other LoRA settings go under their own label (the "why" sweeps of notebook 07), e.g.

    python scripts/sweep_lora_vs_full.py --out data/sweeps/forgetting_why.json --methods lora \
        --label lora-r1-qv --lora-r 1 --lora-alpha 2 --lora-targets q_proj v_proj --lora-lrs 5e-3 1.5e-2 4e-2

The JSON is rewritten after every run, and runs already in it are skipped, so an interrupted sweep
continues where it stopped. Deterministic per machine and thread count.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere without installing the package

from lora_scratch.files import atomic_write_json  # noqa: E402
from lora_scratch.finetune import ALL_PROJECTIONS, FinetuneConfig, finetune, prepare, val_losses  # noqa: E402
from lora_scratch.train import load_base  # noqa: E402

COMMAND = "python scripts/sweep_lora_vs_full.py"
LORA_R, LORA_ALPHA = 2, 4.0
DEFAULT_LRS = {"lora": (2e-3, 5e-3, 1.5e-2, 4e-2), "full": (1e-4, 3e-4, 1e-3)}


def run_key(label: str, lr: float, seed: int) -> str:
    return f"{label}/lr={lr:g}/seed={seed}"


def load_record(path: Path) -> dict:
    import json

    return json.loads(path.read_text()) if path.exists() else {"runs": {}}


def plan(args: argparse.Namespace) -> list[tuple[str, float, int]]:
    """(method, lr, seed) for every run, seeds innermost so a partial sweep has whole lr groups."""
    lrs = {"lora": args.lora_lrs, "full": args.full_lrs}
    return [(m, lr, s) for s in args.seeds for m in args.methods for lr in lrs[m]]


def sweep(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    record = load_record(out)
    base = load_base()
    template = FinetuneConfig(lr=0.0, steps=args.steps, batch_size=args.batch_size, block_size=args.block_size,
                              eval_every=args.eval_every, eval_windows=args.eval_windows)
    lora = {"r": args.lora_r, "alpha": args.lora_alpha, "targets": list(args.lora_targets)}
    commands = record.get("commands", [record["command"]] if "command" in record else [])
    this = " ".join([COMMAND, *args.argv]).strip()
    record.update(command=commands[0] if commands else this, commands=commands + [this] * (this not in commands),
                  threads=torch.get_num_threads(), torch=torch.__version__, machine=platform.machine(),
                  lora=record.get("lora", lora), before=record.get("before") or val_losses(base, template))
    for method, lr, seed in plan(args):
        label = args.label if (args.label and method == "lora") else method
        key = run_key(label, lr, seed)
        if key in record["runs"]:
            continue
        cfg = FinetuneConfig(**{**template.__dict__, "lr": lr, "seed": seed})
        model = prepare(method, targets=lora["targets"], r=lora["r"], alpha=lora["alpha"], base=load_base(),
                        seed=seed)
        t0 = time.perf_counter()
        run = finetune(model, cfg, before=record["before"])
        run["method"] = label
        if method == "lora":
            run["lora"] = lora
        record["runs"][key] = run
        atomic_write_json(out, record)  # after every run: an interrupted sweep keeps what it has
        a = run["after"]
        print(f"{key:28s} folio {a['folio_val']:.4f}  modern {a['modern_val']:.4f}  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return record


def add_window_args(p: argparse.ArgumentParser, eval_every: bool = True) -> None:
    """The batch, window, evaluation and thread options every sweep shares (notebook 07's 8 x 128 setting)."""
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--block-size", type=int, default=128)
    if eval_every:
        p.add_argument("--eval-every", type=int, default=40)
    p.add_argument("--eval-windows", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)  # 1: tiny ops on a shared CPU


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["lora", "full"], choices=["lora", "full"])
    p.add_argument("--lora-lrs", nargs="+", type=float, default=list(DEFAULT_LRS["lora"]))
    p.add_argument("--full-lrs", nargs="+", type=float, default=list(DEFAULT_LRS["full"]))
    p.add_argument("--label", default="", help="name for these LoRA runs (default 'lora')")
    p.add_argument("--lora-r", type=int, default=LORA_R)
    p.add_argument("--lora-alpha", type=float, default=LORA_ALPHA)
    p.add_argument("--lora-targets", nargs="+", default=list(ALL_PROJECTIONS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=120)
    add_window_args(p)
    p.add_argument("--out", default=str(ROOT / "data" / "sweeps" / "lora_vs_full.json"))
    args = p.parse_args(argv)
    args.argv = list(argv)
    return args


def run_cli(parse_args, run_sweep, argv: list[str] | None) -> dict:
    """The command line of every sweep script: parse, sweep (resuming), say what is in the file."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    record = run_sweep(args)
    print(f"{len(record['runs'])} runs in {args.out}; this call took {time.perf_counter() - start:.0f} s")
    return record


def main(argv: list[str] | None = None) -> dict:
    return run_cli(parse, sweep, argv)


if __name__ == "__main__":
    main()
