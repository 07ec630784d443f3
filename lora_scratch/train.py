"""One training loop for everything: pretraining, full fine-tuning, LoRA (and later QLoRA).

    python -m lora_scratch.train pretrain --steps 2000 --out data/base.safetensors
    python -m lora_scratch.train lora --corpus folio --steps 300 --out data/adapters/folio

The loop trains whatever parameters have requires_grad=True, so LoRA needs nothing special here:
freeze the base (mark_only_lora_as_trainable) and the same loop trains only A and B.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .data import eval_windows, get_batch, load_tokens
from .files import atomic_write_json, load_tensors, read_metadata, save_tensors
from .gpt import GPT, GPTConfig

BASE_PATH = "base.safetensors"
REBUILD_BASE = "python -m lora_scratch.train pretrain --out data/base.safetensors"


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 32
    block_size: int = 256
    lr: float = 2e-3
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    warmup: int = 100
    weight_decay: float = 0.1  # set 0 when you study W_ft - W_base (decay would shrink W itself)
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_windows: int = 64
    seed: int = 1337
    extra: dict = field(default_factory=dict)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters only; no decay on biases and LayerNorm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (requires_grad=True on none of them)")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99))


def perplexity(loss_nats: float) -> float:
    """A loss of L nats per token is as uncertain as a uniform choice among e**L tokens."""
    return math.exp(loss_nats)


def bits_per_byte(loss_nats: float) -> float:
    """Nats to bits: divide by ln 2. With byte tokens this is bits per byte (8 = knowing nothing)."""
    return loss_nats / math.log(2)


@torch.no_grad()
def evaluate(model: GPT, tokens: torch.Tensor, n_windows: int = 64, block_size: int = 256,
             batch_size: int = 32) -> float:
    """Mean cross-entropy (nats per byte) on fixed windows of a split: the same text every call."""
    was_training = model.training
    model.eval()
    x, y = eval_windows(tokens, n_windows, block_size)
    total = 0.0
    for i in range(0, n_windows, batch_size):
        _, loss = model(x[i:i + batch_size], y[i:i + batch_size])
        total += loss.item() * len(x[i:i + batch_size])
    model.train(was_training)
    return total / n_windows


def train(model: GPT, train_tokens: torch.Tensor, cfg: TrainConfig,
          val_tokens: dict[str, torch.Tensor] | None = None, progress: bool = True,
          optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Train the parameters of `model` that require grad. Returns the history (losses, times).

    `optimizer` replaces the default AdamW (e.g. LoRA+'s two learning rates); the schedule sets each
    group's lr to lr_at(step) times the group's "lr_scale" (default 1)."""
    val_tokens = val_tokens or {}
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = optimizer if optimizer is not None else make_optimizer(model, cfg)
    history = {"step": [], "train_loss": [], "val": {k: [] for k in val_tokens}, "elapsed_s": []}

    def log_eval(step: int, train_loss: float) -> None:
        history["step"].append(step)
        history["train_loss"].append(train_loss)
        history["elapsed_s"].append(time.perf_counter() - start)
        for name, toks in val_tokens.items():
            history["val"][name].append(evaluate(model, toks, cfg.eval_windows, cfg.block_size))

    model.train()
    start = time.perf_counter()
    running = None
    bar = tqdm(range(cfg.steps), disable=not progress, desc="training")
    for step in bar:
        if cfg.eval_every and step % cfg.eval_every == 0 and step > 0:
            log_eval(step, running)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg) * group.get("lr_scale", 1.0)
        x, y = get_batch(train_tokens, cfg.batch_size, cfg.block_size, gen)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
        opt.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        bar.set_postfix(loss=f"{running:.3f}")
    log_eval(cfg.steps, running)
    history["train_seconds"] = time.perf_counter() - start
    model.eval()
    return history


# ---- checkpoints: safetensors + the config in the header; the tied head is stored once ----

def save_checkpoint(model: GPT, path: Path, info: dict | None = None) -> None:
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied to tok_emb
    meta = {"config": json.dumps(model.config.to_dict()), "info": json.dumps(info or {})}
    save_tensors(Path(path), state, metadata=meta)


def load_checkpoint(path: Path) -> GPT:
    """A GPT from a safetensors checkpoint written by save_checkpoint (no pickle involved)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing. Rebuild the base model from the repository root "
                                f"with: {REBUILD_BASE}  (about 25 minutes on 2 CPU cores)")
    state = load_tensors(path)
    cfg = GPTConfig(**json.loads(read_metadata(path)["config"]))
    model = GPT(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if set(missing) != {"lm_head.weight"} or unexpected:
        raise ValueError(f"{path} does not match a GPT of its own config: missing {missing}, "
                         f"unexpected {unexpected}")
    return model.eval()


def load_base() -> GPT:
    """The shipped, pretrained base model (data/base.safetensors)."""
    from .data import data_dir

    return load_checkpoint(data_dir() / BASE_PATH)


# ---- command line ----

def _pretrain(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, block_size=args.block_size,
                      lr=args.lr, eval_every=args.eval_every, seed=args.seed)
    torch.manual_seed(cfg.seed)
    gcfg = GPTConfig.tiny() if args.preset == "tiny" else GPTConfig(
        n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd, block_size=args.block_size)
    model = GPT(gcfg)
    n = sum(p.numel() for p in model.parameters())
    print(f"GPT {gcfg.to_dict()}: {n:,} parameters; {cfg.steps} steps of {cfg.batch_size}x{cfg.block_size} "
          f"tokens on {torch.get_num_threads()} threads")
    val = {"modern_val": load_tokens("modern", "val"), "folio_val": load_tokens("folio", "val")}
    hist = train(model, load_tokens("modern", "train"), cfg, val)
    for s, t, v, e in zip(hist["step"], hist["train_loss"], hist["val"]["modern_val"], hist["elapsed_s"]):
        print(f"step {s:5d}  train {t:.3f}  modern val {v:.3f}  ({e / 60:.1f} min)")
    info = {"train": asdict(cfg), "parameters": n, "history": hist}
    if args.out:
        save_checkpoint(model, args.out, info)
        atomic_write_json(Path(args.out).with_suffix(".json"), info)
        print(f"saved {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB)")
    if args.log:
        atomic_write_json(Path(args.log), info)


def _lora(args: argparse.Namespace) -> None:
    from .lora import add_lora, mark_only_lora_as_trainable, save_adapter

    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.base) if args.base else load_base()
    targets = args.targets.split(",")
    add_lora(model, targets=targets, r=args.r, alpha=args.alpha)
    mark_only_lora_as_trainable(model)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, block_size=args.block_size, lr=args.lr,
                      warmup=args.warmup, weight_decay=0.0, eval_every=args.eval_every, seed=args.seed)
    val = {f"{args.corpus}_val": load_tokens(args.corpus, "val")}
    if args.corpus != "modern":
        val["modern_val"] = load_tokens("modern", "val")
    hist = train(model, load_tokens(args.corpus, "train"), cfg, val)
    for i, s in enumerate(hist["step"]):
        vals = "  ".join(f"{k} {v[i]:.3f}" for k, v in hist["val"].items())
        print(f"step {s:5d}  train {hist['train_loss'][i]:.3f}  {vals}")
    save_adapter(model, args.out, info={"corpus": args.corpus, "train": asdict(cfg), "history": hist})
    print(f"saved adapter to {args.out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lora_scratch.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="pretrain the byte-level GPT on the modern-spelling plays")
    p.add_argument("--preset", choices=["tiny", "custom"], default="tiny")
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--out", type=Path, help="checkpoint to write (e.g. data/base.safetensors)")
    p.add_argument("--log", type=Path, help="also write the history to this JSON file")
    q = sub.add_parser("lora", help="train a LoRA adapter on the shipped base")
    q.add_argument("--corpus", choices=["folio", "sonnets", "milton", "modern"], default="folio")
    q.add_argument("--base", type=Path, help="base checkpoint (default: data/base.safetensors)")
    q.add_argument("--targets", default="q_proj,v_proj")
    q.add_argument("--r", type=int, default=8)
    q.add_argument("--alpha", type=float, default=16.0)
    q.add_argument("--steps", type=int, default=300)
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--block-size", type=int, default=256)
    q.add_argument("--lr", type=float, default=2e-3)
    q.add_argument("--warmup", type=int, default=20)
    q.add_argument("--eval-every", type=int, default=100)
    q.add_argument("--out", type=Path, required=True)
    for sp in (p, q):
        sp.add_argument("--seed", type=int, default=1337)
        sp.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    {"pretrain": _pretrain, "lora": _lora}[args.command](args)


if __name__ == "__main__":
    main()
