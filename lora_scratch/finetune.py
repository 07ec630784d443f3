"""LoRA vs full fine-tuning from the same base, same data, same steps (notebook 07).

    model = prepare("lora", targets=ALL_PROJECTIONS, r=2, alpha=4)   # or prepare("full")
    run = finetune(model, FinetuneConfig(lr=5e-3, steps=120))       # losses before/after, times

LoRA (Hu et al., 2021, §4) trains A and B only; full fine-tuning trains every weight. The
trade-off studied here is Biderman et al. (2024, "LoRA Learns Less and Forgets Less"): how much
each method learns of the new domain (Folio spelling) against how much it forgets of the old one
(modern spelling), compared at equal learning.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from .data import load_tokens
from .gpt import GPT
from .lora import add_lora, mark_only_lora_as_trainable
from .train import TrainConfig, evaluate, load_base, make_optimizer, train

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj")
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("up_proj", "down_proj")
METHODS = ("lora", "full")


@dataclass
class FinetuneConfig:
    lr: float
    steps: int = 120
    batch_size: int = 8
    block_size: int = 128
    warmup: int = 20
    seed: int = 0
    eval_every: int = 40
    eval_windows: int = 32

    def train_config(self) -> TrainConfig:
        # weight decay 0 for both methods: decay would pull full fine-tuning back towards zero, not the base
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, block_size=self.block_size, lr=self.lr,
                           warmup=self.warmup, weight_decay=0.0, eval_every=self.eval_every,
                           eval_windows=self.eval_windows, seed=self.seed)


def choose_targets(part: str) -> list[str]:
    """Module names for add_lora: 'attention' (q, k, v, o), 'mlp' (up, down) or 'all' (all six)."""
    table = {"attention": ATTENTION, "mlp": MLP, "all": ALL_PROJECTIONS}
    if part not in table:
        raise ValueError(f"part must be one of {sorted(table)}, got {part!r}")
    return list(table[part])


def prepare(method: str, targets=ALL_PROJECTIONS, r: int = 2, alpha: float = 4.0, base: GPT | None = None,
            seed: int = 0) -> GPT:
    """A fresh copy of the shipped base, set up for 'lora' (A, B trainable) or 'full' (all trainable)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    model = base if base is not None else load_base()
    torch.manual_seed(seed)  # A's random init (§4.1) is part of the run: seed it like the batches
    if method == "lora":
        add_lora(model, targets=list(targets), r=r, alpha=alpha)
        mark_only_lora_as_trainable(model)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    return model


def lora_optimizer(model: nn.Module, lr: float) -> torch.optim.AdamW:
    """The LoRA-only training set-up (§4.2): freeze every weight but the lora_A / lora_B matrices and give
    Adam only those, so it keeps m and v for them alone. Betas and weight decay 0 as in the course's loop."""
    mark_only_lora_as_trainable(model)
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.99),
                             weight_decay=0.0)


def trainable_fraction(model: nn.Module) -> float:
    """Trainable parameters / all parameters (tied weights counted once, as .parameters() does)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad) / sum(p.numel() for p in params)


def optimizer_state_bytes(model: nn.Module) -> int:
    """Adam keeps two fp32-sized tensors (m and v) per *trainable* parameter; frozen ones cost nothing.
    (The per-tensor step counter, a few bytes, is left out.)"""
    return sum(2 * p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def forgetting(before: float, after: float) -> float:
    """How much worse the model got on the old domain: modern loss after − before (> 0 means forgot)."""
    return after - before


def folio_gain(before: float, after: float) -> float:
    """How much the model learned of the new domain: Folio loss before − after (> 0 means learned)."""
    return before - after


def val_splits() -> dict[str, torch.Tensor]:
    return {"folio_val": load_tokens("folio", "val"), "modern_val": load_tokens("modern", "val")}


def val_losses(model: GPT, cfg: FinetuneConfig) -> dict[str, float]:
    return {k: evaluate(model, v, cfg.eval_windows, cfg.block_size) for k, v in val_splits().items()}


def finetune(model: GPT, cfg: FinetuneConfig, before: dict[str, float] | None = None,
             progress: bool = False, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Train the trainable parameters of `model` on Folio; returns a JSON-ready record with the
    validation losses before, along the way (every eval_every steps) and after."""
    before = before or val_losses(model, cfg)
    history = train(model, load_tokens("folio", "train"), cfg.train_config(), val_splits(), progress=progress,
                    optimizer=optimizer)
    after = {k: v[-1] for k, v in history["val"].items()}
    return {"config": asdict(cfg), "before": before, "after": after, "steps": history["step"],
            "val": history["val"], "train_seconds": history["train_seconds"],
            "trainable_fraction": trainable_fraction(model), "optimizer_state_bytes": optimizer_state_bytes(model)}


def _one_step(model: GPT, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    start = time.perf_counter()
    _, loss = model(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def interleaved_step_times(models: dict[str, GPT], cfg: FinetuneConfig, rounds: int = 8,
                           warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per training step of each model, timed A B A B ... on the same batches, so a slowdown
    of the shared machine hits every model alike. The first `warmup` rounds are not kept."""
    opts = {k: make_optimizer(m, cfg.train_config()) for k, m in models.items()}
    gen = torch.Generator().manual_seed(cfg.seed)
    tokens = load_tokens("folio", "train")
    times: dict[str, list[float]] = {k: [] for k in models}
    for m in models.values():
        m.train()
    for i in range(warmup + rounds):
        starts = torch.randint(len(tokens) - cfg.block_size - 1, (cfg.batch_size,), generator=gen).tolist()
        x = torch.stack([tokens[s:s + cfg.block_size] for s in starts])
        y = torch.stack([tokens[s + 1:s + 1 + cfg.block_size] for s in starts])
        for k, m in models.items():
            t = _one_step(m, opts[k], x, y)
            if i >= warmup:
                times[k].append(t)
    return times


def median_ratio(a: list[float], b: list[float]) -> float:
    """median(a) / median(b): the step-time ratio within one interleaved run."""
    return statistics.median(a) / statistics.median(b)


# ---- reading the sweep (scripts/sweep_lora_vs_full.py): learning vs forgetting ----

def sweep_curves(record: dict) -> dict[tuple[str, float], dict[str, list[float]]]:
    """For each (method, lr): Folio gain and modern forgetting at every evaluated step, mean and
    standard deviation over the seeds that finished."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for run in record["runs"].values():
        groups.setdefault((run["method"], run["config"]["lr"]), []).append(run)
    curves = {}
    for key, runs in sorted(groups.items()):
        gain = torch.tensor([[folio_gain(r["before"]["folio_val"], v) for v in r["val"]["folio_val"]] for r in runs])
        lost = torch.tensor([[forgetting(r["before"]["modern_val"], v) for v in r["val"]["modern_val"]] for r in runs])
        spread = (lambda t: t.std(0, unbiased=True)) if len(runs) > 1 else (lambda t: torch.zeros(t.shape[1]))
        curves[key] = {"steps": runs[0]["steps"], "seeds": len(runs), "gain": gain.mean(0).tolist(),
                       "gain_std": spread(gain).tolist(), "forget": lost.mean(0).tolist(),
                       "forget_std": spread(lost).tolist()}
    return curves


def best_lr(curves: dict, method: str, tie: float = 0.005) -> float:
    """The learning rate with the largest mean Folio gain after the last step (tuned per method);
    gains within `tie` nats of the best (below the seed spread) count as equal: the smaller lr wins."""
    final = {lr: curves[(m, lr)]["gain"][-1] for m, lr in curves if m == method}
    return min(lr for lr, g in final.items() if g >= max(final.values()) - tie)


def forgetting_at_gain(curves: dict, method: str, gains: list[float]) -> list[float]:
    """The least forgetting any of `method`'s (lr, step) checkpoints shows while gaining at least g,
    for each g in `gains` (its learning–forgetting frontier; nan where none learned that much).
    Compare methods at equal learning, not at equal steps (Biderman et al., 2024)."""
    pts = [(g, f) for (m, _), c in curves.items() if m == method for g, f in zip(c["gain"], c["forget"])]
    return [min((f for g, f in pts if g >= want), default=math.nan) for want in gains]


def _frontier_std(curves: dict, method: str, gains: list[float]) -> list[float]:
    """The seed standard deviation of forgetting at the checkpoint that sets the frontier at each gain."""
    pts = [(f, g, sd) for (m, _), c in curves.items() if m == method
           for g, f, sd in zip(c["gain"], c["forget"], c["forget_std"])]
    return [min(((f, sd) for f, g, sd in pts if g >= want), default=(math.nan, math.nan))[1] for want in gains]


def frontier_gap(curves: dict, method: str, reference: str, points: int = 21) -> dict:
    """`method`'s frontier minus `reference`'s at `points` Folio gains both reach (> 0: `method` forgets more
    at equal learning), with `noise`: the largest seed standard deviation among the checkpoints that set
    the two frontiers (a learning rate that diverges elsewhere does not count as noise here)."""
    reach = {m: [g for (k, _), c in curves.items() if k == m for g in c["gain"]] for m in (method, reference)}
    if not all(reach.values()):
        raise ValueError(f"the curves need runs of both {method!r} and {reference!r}; they have "
                         f"{sorted({k for k, _ in curves})}")
    lo, hi = max(min(g) for g in reach.values()), min(max(g) for g in reach.values())
    gains = [lo + (hi - lo) * i / (points - 1) for i in range(points)]
    a, b = forgetting_at_gain(curves, method, gains), forgetting_at_gain(curves, reference, gains)
    noise = max(_frontier_std(curves, method, gains) + _frontier_std(curves, reference, gains))
    return {"gains": gains, "diff": [x - y for x, y in zip(a, b)], "noise": noise, "lo": lo, "hi": hi,
            "frontiers": {method: a, reference: b}}
