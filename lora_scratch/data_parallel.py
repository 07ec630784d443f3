"""Data-parallel LoRA: every process holds the whole model, trains on its own shard of the batch, and
averages the gradients with one all-reduce after backward (notebook 11).

    grads = average_gradients([grads_of_rank0, grads_of_rank1])    # the math, in one process
    sent = allreduce_gradients(trainable_parameters(model), world)  # the real thing, in torch.distributed
    allreduce_bytes(model)           # what each step hands to all_reduce: trainable params x 4 bytes (fp32)
    zero_stage_bytes(7.5e9, 64, 2)   # per-device bytes of weights + gradients + Adam under ZeRO stage 2

Why averaging works: the loss of a global batch made of N equal shards is the mean of the N shard losses,
so its gradient is the mean of the N shard gradients (Li et al., 2020, "PyTorch Distributed", §2). After
the all-reduce every rank holds the same gradient, takes the same optimizer step, and the replicas stay
identical. Only parameters that require grad are reduced: with LoRA that is A and B, not W.

ZeRO (Rajbhandari et al., 2019, §5) removes the other redundancy of data parallelism: each of N devices
keeps only 1/N of the optimizer state (stage 1), of the gradients (stage 2), and of the weights (stage 3).
"""
from __future__ import annotations

import hashlib
import os
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn

from .counting import gpt_params, lora_budget
from .data import get_batch
from .gpt import GPTConfig
from .train import TrainConfig, lr_at, make_optimizer

ZERO_STAGES = {0: "plain data parallel", 1: "ZeRO-1: P_os", 2: "ZeRO-2: P_os+g", 3: "ZeRO-3: P_os+g+p"}


LOOPBACK = {"linux": "lo", "darwin": "lo0"}  # gloo's own connections stay on this machine too


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_init_method(port: int) -> str:
    """The rendezvous address for processes on this machine. PyTorch's Windows builds have no libuv, yet
    2.4 to 2.6 ask for it by default and fail ("use_libuv was requested but PyTorch was built without libuv
    support", pytorch/pytorch#139990): on Windows the address says use_libuv=0, which every release since 2.4
    accepts (and earlier ones never used libuv)."""
    url = f"tcp://127.0.0.1:{port}"
    major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    if sys.platform == "win32" and (major, minor) >= (2, 4):
        url += "?use_libuv=0"
    return url


def prepare_local_gloo() -> None:
    """Environment for gloo between processes on one machine: the loopback interface, and no libuv on Windows
    (the same fix as tcp_init_method, for torchrun's env:// rendezvous)."""
    if sys.platform in LOOPBACK:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", LOOPBACK[sys.platform])
    if sys.platform == "win32":
        os.environ.setdefault("USE_LIBUV", "0")


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters whose gradients must be averaged: requires_grad only (LoRA: A and B)."""
    return [p for p in model.parameters() if p.requires_grad]


# ---------------------------------------------------------------------------------------------
# The math and the bytes
# ---------------------------------------------------------------------------------------------

def average_gradients(per_rank: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """per_rank[k][i] is rank k's gradient of parameter i; returns the mean over ranks of each parameter.

    What all_reduce(SUM) followed by a division by the world size computes, written without processes."""
    if not per_rank:
        raise ValueError("per_rank is empty: give one list of gradients per rank")
    return [torch.stack(grads).sum(0) / len(per_rank) for grads in zip(*per_rank)]  # sum, then / N


def allreduce_bytes(model: nn.Module) -> int:
    """Bytes one data-parallel step hands to all_reduce: every trainable parameter's gradient once
    (same dtype as the parameter, so 4 bytes per fp32 parameter). Frozen weights send nothing."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def ring_allreduce_bytes(n_bytes: float, world_size: int) -> float:
    """Bytes each process sends in a ring all-reduce of n_bytes: a reduce-scatter and an all-gather,
    each passing (N - 1) chunks of n_bytes / N, so 2 (N - 1) / N x n_bytes (0 when N = 1)."""
    if world_size < 1:
        raise ValueError(f"world_size must be a positive number of processes, got {world_size}")
    return 2 * (world_size - 1) / world_size * n_bytes


def gpt_allreduce_bytes(cfg: GPTConfig, targets: tuple[str, ...] | None = None, r: int = 0,
                        bytes_per_value: int = 4) -> int:
    """all_reduce bytes per step for GPT(cfg) from counting alone: full fine-tuning (targets None)
    or LoRA on `targets` at rank r. bytes_per_value 4 for fp32 gradients, 2 for fp16/bf16."""
    n = gpt_params(cfg) if targets is None else lora_budget(cfg, targets, r)
    return n * bytes_per_value


def zero_stage_bytes(n_params: float, n_devices: int, stage: int, k: float = 12,
                     n_trainable: float | None = None) -> float:
    """Per-device bytes of model states in mixed-precision Adam (ZeRO §3.1: 2Ψ fp16 weights + 2Ψ fp16
    gradients + KΨ fp32 master, m, v with K = 12), when ZeRO partitions them over n_devices (§5.1-5.3):
    stage 1 shards the optimizer state, stage 2 also the gradients, stage 3 also the weights.

    n_trainable < n_params is LoRA: gradients and optimizer state exist for the trainable part only."""
    if stage not in ZERO_STAGES:
        raise ValueError(f"stage must be one of {sorted(ZERO_STAGES)} (0 = plain data parallel), got {stage!r}")
    if n_devices < 1:
        raise ValueError(f"n_devices must be a positive integer, got {n_devices}")
    t = n_params if n_trainable is None else n_trainable
    weights = 2 * n_params / (n_devices if stage >= 3 else 1)
    grads = 2 * t / (n_devices if stage >= 2 else 1)
    optimizer = k * t / (n_devices if stage >= 1 else 1)
    return weights + grads + optimizer


def zero_comm_bytes(n_params: float, world_size: int, stage: int, n_trainable: float | None = None,
                    bytes_per_value: int = 2) -> float:
    """Bytes each device sends per step (ZeRO §7). Stages 0-2: the gradients of the trainable part go
    through one reduce-scatter + one all-gather, a ring all-reduce's volume. Stage 3 reduce-scatters
    the gradients but must all-gather the weights it does not hold, for the forward and again for the
    backward pass: 2 (N - 1) / N x all weights. Full fine-tuning: 1.5 x plain data parallel."""
    if stage not in ZERO_STAGES:
        raise ValueError(f"stage must be one of {sorted(ZERO_STAGES)} (0 = plain data parallel), got {stage!r}")
    t = n_params if n_trainable is None else n_trainable
    if stage < 3:
        return ring_allreduce_bytes(t * bytes_per_value, world_size)
    share = (world_size - 1) / world_size  # each device receives the N - 1 shards it lacks
    return share * t * bytes_per_value + 2 * share * n_params * bytes_per_value


# ---------------------------------------------------------------------------------------------
# The real thing: torch.distributed
# ---------------------------------------------------------------------------------------------

def allreduce_gradients(params: list[nn.Parameter], world_size: int, bucket: bool = True) -> int:
    """After backward: all_reduce(SUM) every gradient, divide by world_size; returns the bytes handed
    to all_reduce. bucket=True flattens them into one tensor first (one call instead of one per tensor,
    as DDP's gradient buckets do)."""
    grads = [p.grad for p in params]
    if any(g is None for g in grads):
        raise RuntimeError("a trainable parameter has no gradient: call loss.backward() before averaging, "
                           "and freeze (requires_grad=False) parameters the loss does not use")
    if not bucket:
        for g in grads:
            dist.all_reduce(g, op=dist.ReduceOp.SUM)
            g.div_(world_size)
        return sum(g.numel() * g.element_size() for g in grads)
    flat = torch.cat([g.reshape(-1) for g in grads])  # one bucket: (sum of numel,)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(world_size)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
    return flat.numel() * flat.element_size()


def broadcast_parameters(params: list[nn.Parameter], src: int = 0) -> int:
    """Copy rank src's values into every rank, as DDP does once at the start; returns the bytes."""
    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=src)
    return sum(p.numel() * p.element_size() for p in params)


def shard_seed(seed: int, rank: int) -> int:
    """Each rank draws its own shard from its own generator: different ranks, different windows."""
    return seed + 1000 * rank


class ShardSampler:
    """The batches of some ranks: ranks=[r] inside rank r of a data-parallel run; ranks=range(N) in one
    process gives the global batch of all N ranks concatenated (rank 0's rows first)."""

    def __init__(self, tokens: torch.Tensor, batch_size: int, block_size: int, seed: int, ranks: list[int]):
        self.tokens, self.batch_size, self.block_size = tokens, batch_size, block_size
        self.generators = [torch.Generator().manual_seed(shard_seed(seed, r)) for r in ranks]

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [get_batch(self.tokens, self.batch_size, self.block_size, g) for g in self.generators]
        return torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs])  # (n_ranks * B, T) each


def train_data_parallel(model: nn.Module, sampler: ShardSampler, cfg: TrainConfig, world_size: int = 1) -> dict:
    """lora_scratch.train's step (AdamW, warm-up + cosine, clipping) with one line added: the gradient
    all-reduce between backward and the optimizer step. world_size 1 is the single-process reference.
    Returns per-step lists: loss (this rank's shard), bytes all-reduced, step and all-reduce seconds."""
    params = trainable_parameters(model)
    opt = make_optimizer(model, cfg)
    record = {"loss": [], "allreduce_bytes": [], "step_s": [], "allreduce_s": []}
    model.train()
    for step in range(cfg.steps):
        start = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        x, y = sampler.next_batch()
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        reduce_start = time.perf_counter()
        sent = allreduce_gradients(params, world_size) if world_size > 1 else 0  # ← the data-parallel line
        record["allreduce_s"].append(time.perf_counter() - reduce_start)
        if cfg.grad_clip:  # after the average, so every rank clips the same gradient
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        record["step_s"].append(time.perf_counter() - start)
        record["loss"].append(loss.item())
        record["allreduce_bytes"].append(sent)
    model.eval()
    return record


def trainable_digest(model: nn.Module) -> str:
    """sha256 of every trainable tensor's bytes, by name: equal digests mean bit-identical replicas."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().contiguous().numpy().tobytes())
    return h.hexdigest()
