"""Data-parallel LoRA on the CPU: 2 processes, backend gloo, our own gradient all-reduce (notebook 11).

    python scripts/ddp_lora.py --out /tmp/ddp                     # starts the 2 processes itself
    torchrun --standalone --nproc_per_node 2 scripts/ddp_lora.py --out /tmp/ddp   # the same, via torchrun

Each rank loads the shipped base, adds LoRA (r = 2, alpha = 4 on all six projections), receives rank 0's
A and B (a broadcast, as DDP does at start), and trains `--steps` steps on its own shard of the Folio
text (batch --batch-size x --block-size per rank, seeded per rank). After backward the trainable
gradients are flattened into one bucket, all_reduce(SUM) and divided by the world size. Then, for the
byte count, `--full-steps` steps of full fine-tuning do the same with every weight trainable.

Writes, under --out: rank<k>/ (each rank's adapter, safetensors) and ddp_lora.json (per rank: the
digest of its trainable tensors, the bytes handed to all_reduce each step, step and all-reduce times).
Everything is local: the processes meet at 127.0.0.1 on a free port; each uses one thread.
--ddp-check repeats the LoRA run with torch's DistributedDataParallel and records how far its adapter is
from ours (0.0 here: bit for bit the same).
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from lora_scratch.bench import compare
from lora_scratch.data import load_tokens
from lora_scratch.data_parallel import (
    ShardSampler,
    allreduce_bytes,
    broadcast_parameters,
    free_port,
    prepare_local_gloo,
    tcp_init_method,
    train_data_parallel,
    trainable_digest,
    trainable_parameters,
)
from lora_scratch.files import atomic_write_json
from lora_scratch.finetune import ALL_PROJECTIONS, prepare
from lora_scratch.lora import lora_state_dict, save_adapter
from lora_scratch.train import TrainConfig


def run_method(args: argparse.Namespace, method: str, steps: int, rank: int, world: int) -> tuple[dict, object]:
    """Train one method for `steps` steps in this rank; returns its summary and the model."""
    model = prepare(method, targets=ALL_PROJECTIONS, r=2, alpha=4.0, seed=args.seed)
    params = trainable_parameters(model)
    broadcast = broadcast_parameters(params, src=0)  # every replica starts from rank 0's values
    cfg = TrainConfig(steps=steps, batch_size=args.batch_size, block_size=args.block_size, lr=args.lr[method],
                      warmup=min(5, steps), weight_decay=0.0, seed=args.seed)
    sampler = ShardSampler(load_tokens("folio", "train"), cfg.batch_size, cfg.block_size, cfg.seed, [rank])
    record = train_data_parallel(model, sampler, cfg, world_size=world)
    timed = slice(1, None) if steps > 1 else slice(None)  # the first step allocates: leave it out of medians
    summary = {"train_config": asdict(cfg), "steps": steps, "trainable_params": sum(p.numel() for p in params),
               "predicted_allreduce_bytes": allreduce_bytes(model), "broadcast_bytes": broadcast,
               "digest": trainable_digest(model), "median_step_s": statistics.median(record["step_s"][timed]),
               "median_allreduce_s": statistics.median(record["allreduce_s"][timed]), **record}
    return summary, model


def ddp_gap(cfg: TrainConfig, ours: torch.nn.Module, rank: int) -> float:
    """The same LoRA run with PyTorch's DistributedDataParallel doing the averaging (its hooks all-reduce
    during backward; our all-reduce line is switched off by world_size=1): the largest relative
    difference between its adapter and ours."""
    model = prepare("lora", targets=ALL_PROJECTIONS, r=2, alpha=4.0, seed=cfg.seed)
    ddp = DistributedDataParallel(model)  # broadcasts rank 0's parameters, as broadcast_parameters does
    sampler = ShardSampler(load_tokens("folio", "train"), cfg.batch_size, cfg.block_size, cfg.seed, [rank])
    train_data_parallel(ddp, sampler, cfg, world_size=1)
    theirs, mine = lora_state_dict(model), lora_state_dict(ours)
    gap = max(((theirs[k] - mine[k]).norm() / mine[k].norm().clamp_min(1e-30)).item() for k in mine)
    del ddp
    gc.collect()  # free DDP's reducer (its hooks form cycles) now, not after the process group is destroyed
    return gap


def time_allreduce(sizes: dict[str, int], rounds: int) -> dict[str, list[float]]:
    """Seconds for a barrier + an all_reduce of a bucket of each size (bytes), timed A B A B ... with
    lora_scratch.bench; "barrier" alone is timed too, so the all-reduce's own cost is the difference.
    The barrier keeps one rank's waiting for the other out of the all-reduce time."""
    buffers = {name: torch.zeros(n // 4) for name, n in sizes.items()}  # fp32: 4 bytes per value
    fns = {"barrier": dist.barrier}
    fns.update({name: (lambda b=b: (dist.barrier(), dist.all_reduce(b))) for name, b in buffers.items()})
    return {name: timing.times for name, timing in compare(fns, rounds=rounds, warmup=2).items()}


def worker(rank: int, world: int, init_method: str, args: argparse.Namespace) -> None:
    torch.set_num_threads(1)  # two processes on two cores: one thread each
    # a rank that waits longer than this for the other one fails with a message instead of hanging
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world, timeout=timedelta(minutes=5))
    try:
        results = {"rank": rank}
        for method, steps in (("lora", args.steps), ("full", args.full_steps)):
            if steps:
                results[method], model = run_method(args, method, steps, rank, world)
                if method == "lora":
                    save_adapter(model, args.out / f"rank{rank}", info={"rank": rank, "world_size": world})
                    if args.ddp_check:
                        cfg = TrainConfig(**results["lora"]["train_config"])
                        results["lora"]["ddp_max_relative_difference"] = ddp_gap(cfg, model, rank)
        sizes = {m: results[m]["predicted_allreduce_bytes"] for m in ("lora", "full") if m in results}
        results["allreduce_timing_s"] = time_allreduce(sizes, args.timing_rounds)
        gathered = [None] * world
        dist.all_gather_object(gathered, results)  # every rank's summary, for rank 0 to write
        if rank == 0:
            config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
            atomic_write_json(args.out / "ddp_lora.json", {"world_size": world, "backend": "gloo",
                                                           "config": config, "ranks": gathered})
        dist.barrier()  # no rank tears down its connections while the other still uses them
    finally:
        dist.destroy_process_group()


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for rank<k>/ adapters and ddp_lora.json")
    p.add_argument("--world-size", type=int, default=2, help="processes to start (ignored under torchrun)")
    p.add_argument("--steps", type=int, default=12, help="LoRA steps")
    p.add_argument("--full-steps", type=int, default=3, help="full fine-tuning steps (for the byte count)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per rank per step")
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--lora-lr", type=float, default=1e-2)
    p.add_argument("--full-lr", type=float, default=3e-4)
    p.add_argument("--timing-rounds", type=int, default=15, help="interleaved all_reduce timing rounds")
    p.add_argument("--ddp-check", action="store_true",
                   help="repeat the LoRA run with torch's DistributedDataParallel and compare the adapters")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.lr = {"lora": args.lora_lr, "full": args.full_lr}
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    prepare_local_gloo()  # loopback only; on Windows, no libuv
    start = time.perf_counter()
    if "RANK" in os.environ:  # started by torchrun: it set RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
        worker(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), "env://", args)
        return
    summary = args.out / "ddp_lora.json"
    summary.unlink(missing_ok=True)  # written at the very end of a run, after every rank has finished its work
    for attempt in range(3):  # another program may take the free port before rank 0 binds it: pick a new one
        init_method = tcp_init_method(free_port())
        try:
            mp.spawn(worker, args=(args.world_size, init_method, args), nprocs=args.world_size, join=True)
            break
        except mp.ProcessRaisedException as error:
            if attempt == 2 or not any(s in str(error) for s in ("EADDRINUSE", "Address already in use")):
                raise
            print(f"{init_method} was taken meanwhile; trying another port", file=sys.stderr)
        except mp.ProcessExitedException as error:
            # gloo occasionally aborts a process while tearing its connections down; if the summary exists,
            # every rank had saved its adapter and passed the all_gather before that: the results are whole
            if not summary.exists():
                raise
            print(f"warning: {error} after all ranks finished and {summary.name} was written "
                  "(an abort while gloo tore down its connections); the results are complete", file=sys.stderr)
            break
    print(f"{args.world_size} processes (gloo, {init_method}) finished in {time.perf_counter() - start:.1f} s; "
          f"wrote {args.out / 'ddp_lora.json'}")


if __name__ == "__main__":
    main()
