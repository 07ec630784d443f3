"""Fully fine-tune the shipped base on First Folio text and save what notebook 02 needs about ΔW.

    python scripts/full_finetune_delta.py        # writes data/full_ft/ (a few minutes on 2 CPU cores)

Every weight of the base GPT is trained (full fine-tuning), with the course's one training loop
(`lora_scratch.train.train`), seeded. Then, for each adapted projection of every block
(q, k, v, o, up, down), ΔW = W_ft − W_base, and the script saves:

    data/full_ft/spectra.safetensors   singular values (float32) of ΔW ("delta/<name>") and of W_base
                                       ("base/<name>") for every projection, and of ΔW part-way through
                                       training ("step/<k>/<name>" after k optimizer steps)
    data/full_ft/delta_sample.safetensors   ΔW itself (fp16) for a couple of matrices
    data/full_ft/run.json              the command, config, seed, threads, the losses before and after,
                                       and the validation losses when every ΔW is cut to rank r

Weight decay is 0 on purpose: AdamW's decoupled decay subtracts lr·λ·W from W at every step, so ΔW
would contain a scaled copy of −W, a full-rank piece that has nothing to do with Folio spelling.

The LoRA hypothesis (Hu et al., 2021, §4) is that the update ΔW has a low "intrinsic rank"; this
measures how low-rank the update of *full* fine-tuning is (Biderman et al., 2024, found it high-rank).
The run is deterministic on one machine and thread count; other CPUs give slightly different numbers.
"""
from __future__ import annotations

import argparse
import hashlib
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere without installing the package

from lora_scratch.data import load_tokens  # noqa: E402
from lora_scratch.files import atomic_write_json, save_tensors  # noqa: E402
from lora_scratch.gpt import GPT  # noqa: E402
from lora_scratch.linalg import (  # noqa: E402
    delta_weights,  # noqa: E402  (one copy; the notebook's exercise)
    low_rank_approx,
    singular_values,
)
from lora_scratch.train import BASE_PATH, TrainConfig, evaluate, load_checkpoint, train  # noqa: E402

PROJECTIONS = ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj", "mlp.up_proj", "mlp.down_proj")
SAMPLE = ("blocks.2.attn.q_proj.weight", "blocks.2.mlp.up_proj.weight")
SNAPSHOTS = (1, 3, 10, 30, 100)  # optimizer steps after which ΔW's spectrum is also kept
RANKS = (0, 1, 2, 4, 8, 16, 32, 64)  # ΔW cut to rank r; 0 = projections left at the base
COMMAND = "python scripts/full_finetune_delta.py"


def adapted_names(model: GPT) -> list[str]:
    """The weight of every projection LoRA could adapt: q, k, v, o, up, down of every block."""
    return [f"blocks.{i}.{p}.weight" for i in range(len(model.blocks)) for p in PROJECTIONS]


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the state dict (training changes the parameters in place)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def spectra(base_state: dict, deltas: dict) -> dict[str, torch.Tensor]:
    """Singular values (descending, float32) of every ΔW and of the base weight it was added to."""
    out = {}
    for name, d in deltas.items():
        out[f"delta/{name}"] = singular_values(d).float()
        out[f"base/{name}"] = singular_values(base_state[name]).float()
    return out


def spectra_during_training(model: GPT, base_state: dict, names: list[str], steps: tuple[int, ...]):
    """Keep the spectrum of every ΔW after the given optimizer steps, via a step hook.

    The training loop builds its own optimizer, so a global post-step hook watches it; remove the
    returned handle when training is done. Returns (dict being filled, handle).
    """
    params = dict(model.named_parameters())
    taken: dict[str, torch.Tensor] = {}
    count = [0]

    def hook(optimizer, args, kwargs) -> None:
        count[0] += 1
        if count[0] in steps:
            for name in names:
                taken[f"step/{count[0]}/{name}"] = singular_values(params[name].detach() - base_state[name]).float()

    return taken, register_optimizer_step_post_hook(hook)


def val_losses(model: GPT, val: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, float]:
    return {split: evaluate(model, toks, cfg.eval_windows, cfg.block_size) for split, toks in val.items()}


@torch.no_grad()
def truncated_losses(model: GPT, base_state: dict, deltas: dict, val: dict, cfg: TrainConfig,
                     ranks: tuple[int, ...] = RANKS) -> dict[str, list]:
    """Validation losses when every ΔW is replaced by its best rank-r approximation (Eckart–Young).

    Everything else (embeddings, biases, LayerNorms) keeps its fine-tuned value, so r = 0 measures
    what the projections' updates add at all. The model is restored afterwards.
    Returns {"r": [...], "<split>": [loss for each r], ...}.
    """
    ft_state = snapshot(model)
    out = {"r": list(ranks), **{split: [] for split in val}}
    for r in ranks:
        state = dict(ft_state)
        for name, d in deltas.items():
            state[name] = base_state[name] + (low_rank_approx(d, r) if r else torch.zeros_like(d))
        model.load_state_dict(state)
        for split, loss in val_losses(model, val, cfg).items():
            out[split].append(loss)
    model.load_state_dict(ft_state)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def finetune(model: GPT, cfg: TrainConfig, base_state: dict, names: list[str], progress: bool = True) -> dict:
    """Full fine-tune on Folio (every parameter trains); returns losses before/after, the history,
    and the spectra of ΔW at the SNAPSHOTS steps."""
    for p in model.parameters():
        p.requires_grad_(True)
    val = {"folio_val": load_tokens("folio", "val"), "modern_val": load_tokens("modern", "val")}
    before = val_losses(model, val, cfg)
    steps = tuple(k for k in SNAPSHOTS if k < cfg.steps)
    snapshots, handle = spectra_during_training(model, base_state, names, steps)
    try:
        history = train(model, load_tokens("folio", "train"), cfg, val, progress=progress)
    finally:
        handle.remove()
    after = {split: history["val"][split][-1] for split in val}
    return {"before": before, "after": after, "history": history, "val": val, "snapshots": snapshots,
            "snapshot_steps": list(steps)}


def run(args: argparse.Namespace) -> dict:
    """Fine-tune, measure ΔW, write the three files; returns the JSON record."""
    torch.set_num_threads(args.threads)
    base_path = Path(args.base)
    model = load_checkpoint(base_path)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, block_size=args.block_size, lr=args.lr,
                      warmup=args.warmup, weight_decay=0.0, eval_every=args.eval_every, seed=args.seed)
    base_state = snapshot(model)
    names = adapted_names(model)
    result = finetune(model, cfg, base_state, names, progress=not args.quiet)
    deltas = delta_weights(base_state, model.state_dict(), names)
    ranks = tuple(r for r in RANKS if r <= min(min(d.shape) for d in deltas.values()))
    record = {
        "command": " ".join([COMMAND, *args.argv]).strip(),
        "train": asdict(cfg), "seed": cfg.seed, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "machine": platform.machine(), "base_sha256": sha256(base_path),
        "parameters": sum(p.numel() for p in model.parameters()),
        "names": names, "shapes": {n: list(d.shape) for n, d in deltas.items()},
        "before": result["before"], "after": result["after"], "history": result["history"],
        "truncated": truncated_losses(model, base_state, deltas, result["val"], cfg, ranks),
        "sample": [n for n in SAMPLE if n in deltas], "snapshot_steps": result["snapshot_steps"],
    }
    write(Path(args.out), record, {**spectra(base_state, deltas), **result["snapshots"]}, deltas)
    return record


def write(out: Path, record: dict, spec: dict, deltas: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / "spectra.safetensors", spec)
    save_tensors(out / "delta_sample.safetensors", {n: deltas[n].half() for n in record["sample"]})
    atomic_write_json(out / "run.json", record)


def print_summary(record: dict, out: Path) -> None:
    for when in ("before", "after"):
        losses = "  ".join(f"{k} {v:.4f}" for k, v in record[when].items())
        print(f"{when:>6}: {losses}")
    cut = record["truncated"]
    for i, r in enumerate(cut["r"]):
        print(f"ΔW cut to rank {r:>3}: " + "  ".join(f"{k} {cut[k][i]:.4f}" for k in record["after"]))
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"train time {record['history']['train_seconds']:.0f} s; wrote {out} ({size / 1e6:.2f} MB)")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default=str(ROOT / "data" / BASE_PATH), help="base checkpoint (safetensors)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "data" / "full_ft"))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    record = run(args)
    print_summary(record, Path(args.out))
    print(f"total {time.perf_counter() - start:.0f} s")
    return record


if __name__ == "__main__":
    main()
