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
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .data import eval_windows, get_batch, load_tokens
from .files import atomic_write_json, check_finite, json_text, read_safetensors, save_tensors
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
    """One safetensors file: every weight (the tied head once) and, in its header, the GPT config and `info`.
    Checked first (a plain GPT, JSON-able info, finite weights), then written atomically: a failure leaves
    any checkpoint already at `path` as it was."""
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied to tok_emb
    if not isinstance(model, GPT) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError("save_checkpoint saves a plain GPT; for a model with LoRA layers use save_adapter, or "
                         "serve.merge_and_unload(model) first to fold the adapter into the weights")
    meta = {"config": json_text(model.config.to_dict(), "the GPT config", indent=None),
            "info": json_text(info or {}, "info", indent=None)}
    check_finite(state, f"refused to save the checkpoint, and {path} was left as it was",
                 "The training diverged: lower the learning rate (or warm up longer) and train again.")
    save_tensors(Path(path), state, metadata=meta)


def load_checkpoint(path: Path) -> GPT:
    """A GPT from a safetensors checkpoint written by save_checkpoint (no pickle involved), in the dtype
    it was saved in."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing. Rebuild the base model from the repository root "
                                f"with: {REBUILD_BASE}  (about 25 minutes on 2 CPU cores)")
    state, meta, _ = read_safetensors(path)  # refuses pickles and damaged files: nothing is executed
    try:
        cfg = GPTConfig(**json.loads(meta["config"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is a safetensors file but not a GPT checkpoint written by save_checkpoint "
                         f"(its header holds no valid GPT config: {e!r}); nothing was loaded") from None
    check_finite(state, f"refused to load {path}", "It was saved from a diverged run: train it again with a "
                 f"lower learning rate, or rebuild the shipped base with: {REBUILD_BASE}")
    model = GPT(cfg).to(next(iter(state.values())).dtype if state else torch.float32)
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
        atomic_write_json(Path(args.out).with_suffix(".json"), info)  # the learning curve, beside it
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


def _number(kind: type, low: float, strict: bool = False):
    """An argparse type: a `kind` > low (strict) or >= low, else a one-line error naming the allowed range."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = float("nan")
        if not (value > low if strict else value >= low):  # NaN fails both
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'} "
                                             f"{'>' if strict else '>='} {low:g}, got {text!r}")
        return value
    return parse


POSITIVE_INT, COUNT, POSITIVE = _number(int, 1), _number(int, 0), _number(float, 0, strict=True)


def _check_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every output path is checked before training, so a bad one can neither waste the run nor overwrite a file."""
    outputs = []
    if args.command == "pretrain" and args.out:
        if args.out.suffix != ".safetensors":
            parser.error(f"--out {args.out}: a checkpoint file must end in .safetensors (its learning curve goes "
                         f"to {args.out.with_suffix('.json')})")
        outputs += [("--out", args.out), ("the learning curve", args.out.with_suffix(".json"))]
    if args.command == "pretrain" and args.log:
        if args.out and args.log.resolve() == args.out.resolve():
            parser.error(f"--log {args.log} is the checkpoint --out: give the history another file name")
        if args.log.suffix != ".json":
            parser.error(f"--log {args.log}: the history is JSON, so the file must end in .json")
        outputs.append(("--log", args.log))
    if args.command == "lora":
        if args.out.exists() and not args.out.is_dir():
            parser.error(f"--out {args.out} is a file; an adapter is saved as a folder (e.g. adapters/folio)")
        outputs.append(("--out", args.out / "adapter_model.safetensors"))
    for flag, path in outputs:
        folder = path.resolve().parent
        while not folder.exists():
            folder = folder.parent  # missing folders are created: the nearest existing one must be writable
        if path.is_dir():
            parser.error(f"{flag} {path} is a folder; give a file name")
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            parser.error(f"{flag} {path}: {folder} is a file, not a folder" if not folder.is_dir()
                         else f"{flag} {path}: cannot write in {folder}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lora_scratch.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="pretrain the byte-level GPT on the modern-spelling plays")
    p.add_argument("--preset", choices=["tiny", "custom"], default="tiny")
    p.add_argument("--n-layer", type=POSITIVE_INT, default=4)
    p.add_argument("--n-head", type=POSITIVE_INT, default=4)
    p.add_argument("--n-embd", type=POSITIVE_INT, default=128)
    p.add_argument("--steps", type=POSITIVE_INT, default=2000)
    p.add_argument("--eval-every", type=COUNT, default=250, help="0: evaluate only at the end")
    p.add_argument("--out", type=Path, help="checkpoint to write (e.g. data/base.safetensors)")
    p.add_argument("--log", type=Path, help="also write the history to this JSON file")
    q = sub.add_parser("lora", help="train a LoRA adapter on the shipped base")
    q.add_argument("--corpus", choices=["folio", "sonnets", "milton", "modern"], default="folio")
    q.add_argument("--base", type=Path, help="base checkpoint (default: data/base.safetensors)")
    q.add_argument("--targets", default="q_proj,v_proj")
    q.add_argument("--r", type=POSITIVE_INT, default=8)
    q.add_argument("--alpha", type=POSITIVE, default=16.0)
    q.add_argument("--steps", type=POSITIVE_INT, default=300)
    q.add_argument("--warmup", type=COUNT, default=20)
    q.add_argument("--eval-every", type=COUNT, default=100, help="0: evaluate only at the end")
    q.add_argument("--out", type=Path, required=True, help="adapter folder to write (e.g. data/adapters/folio)")
    for sp in (p, q):
        sp.add_argument("--batch-size", type=POSITIVE_INT, default=32)
        sp.add_argument("--block-size", type=POSITIVE_INT, default=256)
        sp.add_argument("--lr", type=POSITIVE, default=2e-3)
        sp.add_argument("--seed", type=int, default=1337)
        sp.add_argument("--threads", type=POSITIVE_INT, default=2)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_paths(parser, args)
    try:
        {"pretrain": _pretrain, "lora": _lora}[args.command](args)
    except (OSError, ValueError) as e:  # a refused save (NaN weights...), a missing or damaged file
        raise SystemExit(f"{parser.prog} {args.command}: error: {e}") from None


if __name__ == "__main__":
    main()
