"""The LoRA paper's analyses at tiny scale, on the Folio task (notebook 10). Three sub-commands:

    python scripts/sweep_rank_budget.py rank       # data/sweeps/rank.json: r = 1..64 with alpha/r and alpha/sqrt(r)
    python scripts/sweep_rank_budget.py targets    # data/sweeps/targets.json: which matrices, equal budget
    python scripts/sweep_rank_budget.py subspace   # data/sweeps/subspace.json: phi between r=8 and r=64 adapters
    python scripts/sweep_rank_budget.py modules    # data/sweeps/modules.json: attention, MLP or all linear layers

rank      — Table 6 analogue (W_q, W_v; alpha fixed) and the rsLoRA argument: with alpha / r the update
            shrinks as r grows and learning slows; alpha / sqrt(r) keeps it steady (Kalajdzievski, 2023).
targets   — Table 5 analogue (Hu et al., 2021, §7.1): q, k, v, o at r = 8, five pairs at r = 4, all four at
            r = 2, so every setting trains the same number of parameters; scaling alpha / r = 2 for all.
modules   — attention (q, k, v, o) against the MLP (up, down) against all six, the comparison of QLoRA §4
            (Dettmers et al., 2023) and Biderman et al. (2024) §4.6, twice: at the same rank (r = 4, as the
            papers compare), and at an equal budget. Per block a rank-r adapter costs r (in + out): 4 · 320 r on
            attention, 2 · 800 r on the MLP, 2880 r on all six, so attention r = 5 matches the MLP at r = 4
            (6,400 per block) and attention r = 9 matches all six at r = 4 (11,520). alpha / r = 2 for all.
subspace  — §7.2: two adapters on W_q, W_v (r = 8, seed 0; r = 64, seed 1: different seeds, or their
            A matrices would share their first rows at init), 160 steps; the grid
            phi(A_8, A_64, i, j) per layer, for A and for the row space of the update BA.

Every training run is 8x128 bytes per step with lora_scratch.finetune, 1 thread, like
scripts/sweep_lora_vs_full.py; the JSON is rewritten after every run and finished runs are skipped.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere without installing the package

from lora_scratch.counting import count_params  # noqa: E402
from lora_scratch.files import atomic_write_json  # noqa: E402
from lora_scratch.finetune import FinetuneConfig, finetune  # noqa: E402
from lora_scratch.lora import lora_layers  # noqa: E402
from lora_scratch.variants import subspace_grid  # noqa: E402
from scripts.sweep_lora_vs_full import add_window_args, load_record  # noqa: E402
from scripts.sweep_variants import build, header, run_missing, shard, template  # noqa: E402

COMMAND = "python scripts/sweep_rank_budget.py"
QV = ("q_proj", "v_proj")
# Table 5's seven settings, then two pairs the paper did not run
TABLE5 = (("q_proj",), ("k_proj",), ("v_proj",), ("o_proj",), ("q_proj", "k_proj"), ("q_proj", "v_proj"),
          ("q_proj", "k_proj", "v_proj", "o_proj"), ("k_proj", "v_proj"), ("v_proj", "o_proj"))
BUDGET_RANK = 8  # one matrix type at r = 8; n types at r = 8 / n: the same trainable count
ATTENTION, MLP = ("q_proj", "k_proj", "v_proj", "o_proj"), ("up_proj", "down_proj")
# (name, targets, r): the same rank r = 4 on the three groups, then attention at the MLP's and all six's budgets
MODULES = (("attention", ATTENTION, 4), ("mlp", MLP, 4), ("all", ATTENTION + MLP, 4),
           ("attention", ATTENTION, 5), ("attention", ATTENTION, 9))


def rank_jobs(args: argparse.Namespace) -> list[tuple[str, str, dict]]:
    """LoRA (alpha / r) at every rank, rsLoRA (alpha / sqrt(r)) at --rs-ranks; seeds innermost."""
    jobs = []
    for variant, ranks in (("lora", args.ranks), ("rslora", args.rs_ranks)):
        for r in ranks:
            for s in args.seeds:
                kw = {"lr": args.lr, "seed": s, "targets": QV, "r": r, "alpha": args.alpha}
                jobs.append((f"{variant}/r={r}/seed={s}", variant, kw))
    return jobs


def budget_rank(targets: tuple[str, ...]) -> int:
    if BUDGET_RANK % len(targets):
        raise ValueError(f"{len(targets)} matrix types do not divide the budget rank {BUDGET_RANK}")
    return BUDGET_RANK // len(targets)


def targets_jobs(args: argparse.Namespace) -> list[tuple[str, str, dict]]:
    jobs = []
    for targets in TABLE5:
        r = budget_rank(targets)
        for s in args.seeds:
            kw = {"lr": args.lr, "seed": s, "targets": targets, "r": r, "alpha": args.scale * r}
            jobs.append((f"{'+'.join(targets)}/r={r}/seed={s}", "lora", kw))
    return jobs


def modules_jobs(args: argparse.Namespace) -> list[tuple[str, str, dict]]:
    jobs = []
    for name, targets, r in MODULES:
        for s in args.seeds:
            kw = {"lr": args.lr, "seed": s, "targets": targets, "r": r, "alpha": args.scale * r}
            jobs.append((f"{name}/r={r}/seed={s}", "lora", kw))
    return jobs


def train_adapter(r: int, seed: int, args: argparse.Namespace) -> tuple[dict, dict[str, dict]]:
    """Train one W_q, W_v adapter; return its run record and, per layer, A at init, A and BA trained."""
    model = build("lora", QV, r, args.alpha, seed)
    init = {n: layer.lora_A.detach().clone() for n, layer in lora_layers(model).items()}
    cfg = FinetuneConfig(**{**template(args).__dict__, "lr": args.lr, "seed": seed})
    run = finetune(model, cfg)
    layers = {n: {"A0": init[n], "A": layer.lora_A.detach().clone(), "BA": layer.delta_weight().detach()}
              for n, layer in lora_layers(model).items()}
    run["trainable_params"] = count_params(model, trainable_only=True)
    return run, layers


def subspace(args: argparse.Namespace, record: dict, out: Path) -> None:
    """phi grids between the r = 8 (seed 0) and r = 64 (seed 1) adapters, per layer (LoRA §7.2)."""
    if "layers" in record:
        return
    small, big = args.subspace_ranks
    t0 = time.perf_counter()
    run_s, lay_s = train_adapter(small, 0, args)
    run_b, lay_b = train_adapter(big, 1, args)
    grids = {}
    for name in lay_s:
        a, b = lay_s[name], lay_b[name]
        grids[name] = {
            "A": _rounded(subspace_grid(a["A"], b["A"], small, big)),
            "BA": _rounded(subspace_grid(a["BA"], b["BA"], small, big)),
            "A_init": _rounded(subspace_grid(a["A0"], b["A0"], small, big)),  # before training: the control
            "A_moved": float((a["A"] - a["A0"]).norm() / a["A0"].norm()),  # how far training moved A (r=8)
        }
    record.update(runs={f"r={small}/seed=0": run_s, f"r={big}/seed=1": run_b}, layers=grids,
                  ranks=[small, big], seconds=time.perf_counter() - t0)
    atomic_write_json(out, record)
    print(f"subspace: {len(grids)} layers, {record['seconds']:.0f} s", flush=True)


def _rounded(grid: torch.Tensor) -> list[list[float]]:
    return [[round(float(v), 4) for v in row] for row in grid]


def main(argv: list[str] | None = None) -> dict:
    args = parse(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out or ROOT / "data" / "sweeps" / f"{args.study}.json")
    start = time.perf_counter()
    settings = {k: v for k, v in vars(args).items() if k not in ("argv", "out", "threads", "shard")}
    settings["finetune"] = template(args).__dict__ | {"lr": args.lr}
    record = header(load_record(out), args, COMMAND, settings)
    if args.study == "subspace":
        subspace(args, record, out)
    else:
        jobs = {"rank": rank_jobs, "targets": targets_jobs, "modules": modules_jobs}[args.study](args)
        run_missing(record, out, shard(jobs, args.shard), template(args))
    atomic_write_json(out, record)
    print(f"{args.study}: {len(record['runs'])} runs in {out}; this call took {time.perf_counter() - start:.0f} s")
    return record


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", choices=["rank", "targets", "subspace", "modules"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--alpha", type=float, default=8.0, help="rank, subspace: alpha, fixed across ranks")
    p.add_argument("--ranks", nargs="+", type=int, default=[1, 2, 4, 8, 16, 64])
    p.add_argument("--rs-ranks", nargs="+", type=int, default=[4, 16, 64], help="r = 1 is the same in both")
    p.add_argument("--scale", type=float, default=2.0, help="targets, modules: alpha = scale * r (alpha / r fixed)")
    p.add_argument("--subspace-ranks", nargs=2, type=int, default=[8, 64])
    p.add_argument("--steps", type=int, default=None, help="default 120 (160 for subspace)")
    add_window_args(p)
    p.add_argument("--shard", default="0/1", help="i/n: run every n-th job from i (n processes, one file)")
    p.add_argument("--out", default=None, help="default data/sweeps/<study>.json")
    args = p.parse_args(argv)
    args.argv = list(argv)
    args.steps = args.steps or (160 if args.study == "subspace" else 120)
    return args


if __name__ == "__main__":
    main()
