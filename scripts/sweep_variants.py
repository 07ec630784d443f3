"""LoRA, rsLoRA, LoRA+, DoRA and PiSSA on the Folio task: one table, three seeds (notebook 10).

    python scripts/sweep_variants.py          # writes data/sweeps/variants.json (resumable)

Every run starts from the shipped base, adapts the same six projections at the same r and alpha, and
trains 120 steps of 8x128 bytes of Folio with the course's one loop (lora_scratch.finetune), exactly like
scripts/sweep_lora_vs_full.py. Each variant gets its own learning rate: phase 1 tries a small grid with
seed 0 (DoRA takes LoRA's), phase 2 runs the best one (largest Folio gain; near-ties go to the smaller lr)
with every seed. Then one training step of each variant is timed, interleaved, with lora_scratch.bench.

The JSON is rewritten after every run and runs already in it are skipped, so an interrupted sweep
continues where it stopped. `--shard i/n` splits the runs over n processes sharing the file; the plain
command afterwards finds them all done and adds the timing. Deterministic per machine and thread count.
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

from lora_scratch import bench  # noqa: E402
from lora_scratch.counting import count_params  # noqa: E402
from lora_scratch.data import get_batch, load_tokens  # noqa: E402
from lora_scratch.files import atomic_write_json  # noqa: E402
from lora_scratch.finetune import (  # noqa: E402
    ALL_PROJECTIONS,
    FinetuneConfig,
    best_lr,
    finetune,
    prepare,
    sweep_curves,
    val_losses,
)
from lora_scratch.train import load_base, make_optimizer  # noqa: E402
from lora_scratch.variants import VARIANTS, apply_variant, delta_norms, loraplus_optimizer  # noqa: E402
from scripts.sweep_lora_vs_full import add_window_args, load_record, run_cli  # noqa: E402

COMMAND = "python scripts/sweep_variants.py"
R, ALPHA, LORAPLUS_RATIO = 2, 4.0, 20.0
# DoRA has no grid of its own (None): its update has LoRA's scale, so it takes LoRA's lr (which kept the sweep
# inside its CPU budget)
LR_GRID = {"lora": (2e-3, 5e-3, 1.5e-2), "rslora": (2e-3, 5e-3, 1.5e-2), "loraplus": (5e-4, 1.5e-3, 5e-3),
           "dora": None, "pissa": (2e-3, 5e-3, 1.5e-2)}


def run_key(variant: str, lr: float, seed: int) -> str:
    return f"{variant}/lr={lr:g}/seed={seed}"


def build(variant: str, targets, r: int, alpha: float, seed: int) -> torch.nn.Module:
    """A fresh base with LoRA (seeded A) turned into `variant`; only the adapter is trainable."""
    model = prepare("lora", targets=list(targets), r=r, alpha=alpha, base=load_base(), seed=seed)
    return apply_variant(model, variant)


def optimizer_for(model, variant: str, lr: float, ratio: float):
    """LoRA+ brings its own two-group AdamW; every other variant uses the loop's default (None)."""
    return loraplus_optimizer(model, lr, ratio) if variant == "loraplus" else None


def one_run(variant: str, lr: float, seed: int, cfg: FinetuneConfig, before: dict, targets, r: int,
            alpha: float, ratio: float = LORAPLUS_RATIO) -> dict:
    """Train one adapter; the finetune record plus what the variant tables need."""
    model = build(variant, targets, r, alpha, seed)
    cfg = FinetuneConfig(**{**cfg.__dict__, "lr": lr, "seed": seed})
    run = finetune(model, cfg, before=before, optimizer=optimizer_for(model, variant, lr, ratio))
    norms = delta_norms(model)
    run.update(method=variant, adapter={"r": r, "alpha": alpha, "targets": list(targets)},
               trainable_params=count_params(model, trainable_only=True),
               mean_delta_norm=sum(norms.values()) / len(norms))
    if variant == "loraplus":
        run["adapter"]["ratio"] = ratio
    return run


def template(args: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(lr=0.0, steps=args.steps, batch_size=args.batch_size, block_size=args.block_size,
                          eval_every=args.eval_every, eval_windows=args.eval_windows)


def header(record: dict, args: argparse.Namespace, command: str, settings: dict) -> dict:
    """The exact command, the settings and the shared 'before' losses, kept at the top of the JSON."""
    record.update(command=" ".join([command, *args.argv]).strip(), threads=torch.get_num_threads(),
                  torch=torch.__version__, machine=platform.machine(), settings=settings,
                  before=record.get("before") or val_losses(load_base(), template(args)))
    return record


def shard(jobs: list, spec: str) -> list:
    """'i/n': every n-th job starting at i, so n processes can share one sweep (and one JSON file)."""
    i, n = (int(x) for x in spec.split("/"))
    if not 0 <= i < n:
        raise ValueError(f"--shard must be i/n with 0 <= i < n, got {spec!r}")
    return jobs[i::n]


def sync(record: dict, out: Path) -> None:
    """Take in the runs other shards wrote to the same file since we last looked."""
    record["runs"] = {**load_record(out)["runs"], **record["runs"]}


def run_missing(record: dict, out: Path, jobs: list[tuple[str, str, dict]], cfg: FinetuneConfig) -> None:
    """jobs: (key, variant, kwargs for one_run); skip keys already in the file, save after each run."""
    for key, variant, kw in jobs:
        sync(record, out)
        if key in record["runs"]:
            continue
        t0 = time.perf_counter()
        run = one_run(variant, cfg=cfg, before=record["before"], **kw)
        sync(record, out)
        record["runs"][key] = run
        atomic_write_json(out, record)  # after every run: an interrupted sweep keeps what it has
        a = record["runs"][key]["after"]
        print(f"{key:34s} folio {a['folio_val']:.4f}  modern {a['modern_val']:.4f}  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)


def chosen_lrs(record: dict, variants: list[str], seed: int) -> dict[str, float]:
    """Per variant, the best lr of its grid run with `seed` (finetune.best_lr: largest Folio gain);
    a variant without a grid of its own (LR_GRID None) takes LoRA's."""
    grid = {k: v for k, v in record["runs"].items() if k.endswith(f"/seed={seed}")}
    curves = sweep_curves({"runs": grid})
    own = {v: best_lr(curves, v) for v in variants if LR_GRID[v]}
    return {v: own.get(v, own["lora"]) for v in variants}


def wait_for(record: dict, out: Path, keys: list[str], poll_s: float = 20.0) -> None:
    """Block until every key is in the file (another shard may still be running part of the grid)."""
    sync(record, out)
    while not set(keys) <= set(record["runs"]):
        time.sleep(poll_s)
        sync(record, out)


def time_steps(variants: list[str], args: argparse.Namespace) -> dict:
    """Median seconds of one training step per variant, interleaved rounds (lora_scratch.bench)."""
    gen = torch.Generator().manual_seed(0)
    x, y = get_batch(load_tokens("folio", "train"), args.batch_size, args.block_size, gen)
    steps, ops = {}, {}
    for v in variants:
        model = build(v, ALL_PROJECTIONS, R, ALPHA, 0).train()
        opt = optimizer_for(model, v, 1e-3, LORAPLUS_RATIO) or make_optimizer(model, template(args).train_config())
        steps[v] = _step_fn(model, opt, x, y)
        ops[v] = bench.count_ops(lambda m=model: m(x))  # a deterministic proxy: torch ops in one forward
    results = bench.compare(steps, rounds=args.time_rounds, warmup=2, threads=args.threads, grad=True)
    return {"rounds": args.time_rounds, "median_s": {v: t.median for v, t in results.items()},
            "ratio_to_lora": {v: bench.ratio(results, v, "lora") for v in results},
            "table": bench.format_table(results, baseline="lora"), "forward_ops": ops}


def _step_fn(model, opt, x, y):
    def step():
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def sweep(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    cfg = template(args)
    settings = {"targets": list(ALL_PROJECTIONS), "r": R, "alpha": ALPHA, "loraplus_ratio": LORAPLUS_RATIO,
                "lr_grid": {v: list(LR_GRID[v] or ["lora's"]) for v in args.variants}, "grid_seed": args.seeds[0],
                "seeds": args.seeds, "finetune": cfg.__dict__ | {"lr": None}}
    record = header(load_record(out), args, COMMAND, settings)
    common = {"targets": ALL_PROJECTIONS, "r": R, "alpha": ALPHA}
    first = args.seeds[0]
    grid = [(run_key(v, lr, first), v, dict(common, lr=lr, seed=first))
            for v in args.variants for lr in LR_GRID[v] or ()]
    run_missing(record, out, shard(grid, args.shard), cfg)
    wait_for(record, out, [key for key, _, _ in grid])
    record["chosen_lr"] = chosen_lrs(record, args.variants, first)
    rest = [(run_key(v, lr, s), v, dict(common, lr=lr, seed=s))
            for s in args.seeds for v, lr in record["chosen_lr"].items()]
    run_missing(record, out, shard(rest, args.shard), cfg)
    if args.shard != "0/1":
        return record  # a shard trains only; the plain command (no --shard) then finds every run done and times
    if args.time_rounds and "step_time" not in record:
        record["step_time"] = time_steps(args.variants, args)
        print(record["step_time"]["table"])
    atomic_write_json(out, record)
    return record


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=120)
    add_window_args(p)
    p.add_argument("--time-rounds", type=int, default=20)
    p.add_argument("--shard", default="0/1", help="i/n: run every n-th job from i (n processes, one file)")
    p.add_argument("--out", default=str(ROOT / "data" / "sweeps" / "variants.json"))
    args = p.parse_args(argv)
    args.argv = list(argv)
    if "lora" not in args.variants:
        p.error("--variants must include lora: the table and the step-time ratios are relative to it")
    return args


def main(argv: list[str] | None = None) -> dict:
    return run_cli(parse, sweep, argv)


if __name__ == "__main__":
    main()
