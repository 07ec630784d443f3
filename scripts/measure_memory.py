"""Whole-process peak memory of one training step, one fresh subprocess per configuration (Linux).

    python scripts/measure_memory.py              # writes data/memory/peak_rss.json (a minute or two)

Why this way: a CPU has no allocator statistic like torch.cuda.max_memory_allocated, and the resident
set size (RSS) a process has reached does not come down, so each configuration runs in a fresh process.
There glibc is told to serve every allocation above 64 KiB with mmap (MALLOC_MMAP_THRESHOLD_), so a
freed tensor goes back to the OS at once and the high-water mark (VmHWM) follows the live tensors.
Each child builds the model (seed 0), runs one warm-up step (first calls import modules and
initialise kernels, thread pools and caches), frees its gradients and optimizer, resets VmHWM
(/proc/self/clear_refs), notes VmRSS, runs one training step (forward, backward, fused AdamW step,
zero_grad) and reads VmHWM. It also records the four parts measured with saved-tensor hooks
(lora_scratch.memory_measure), which cannot see the backward's temporaries or the recompute of
gradient checkpointing: the RSS peak can. The RSS figures vary by a few MB from run to run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "memory" / "peak_rss.json"
COMMAND = "python scripts/measure_memory.py"
LORA = {"targets": ["q_proj", "v_proj"], "r": 8, "alpha": 16.0}
CONFIGS = {  # name -> model preset, batch, sequence length, method, gradient checkpointing
    "tiny full": ("tiny", 32, 256, "full", False),
    "tiny full + checkpointing": ("tiny", 32, 256, "full", True),
    "tiny LoRA": ("tiny", 32, 256, "lora", False),
    "tiny LoRA + checkpointing": ("tiny", 32, 256, "lora", True),
    "gpt2_small full": ("gpt2_small", 1, 128, "full", False),
    "gpt2_small LoRA": ("gpt2_small", 1, 128, "lora", False),
}


def _status_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def child(name: str) -> dict:
    """Runs inside the fresh process: one measured training step."""
    import torch

    from lora_scratch import GPT, GPTConfig, add_lora, mark_only_lora_as_trainable
    from lora_scratch.memory_measure import fused_adamw, measure_training_step

    preset, batch, seq, method, checkpointing = CONFIGS[name]
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg = getattr(GPTConfig, preset)()
    model = GPT(cfg)
    if method == "lora":
        add_lora(model, LORA["targets"], r=LORA["r"], alpha=LORA["alpha"])
        mark_only_lora_as_trainable(model)
    x, y = (torch.randint(0, cfg.vocab_size, (batch, seq)) for _ in range(2))  # two storages, not one
    warm_up = fused_adamw([p for p in model.parameters() if p.requires_grad])
    model(x, y)[1].backward()  # warm-up: lazy imports (~150 MB for the optimizer), kernels, thread pools
    warm_up.step()
    warm_up.zero_grad(set_to_none=True)
    del warm_up  # its Adam state goes; the measured step allocates its own
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    before = _status_kib("VmRSS")
    parts = measure_training_step(model, x, y, checkpointing=checkpointing)
    peak = _status_kib("VmHWM")
    return {"preset": preset, "batch": batch, "seq": seq, "method": method, "checkpointing": checkpointing,
            "rss_before_step": before * 1024, "peak_rss_during_step": peak * 1024,
            "step_peak_over_before": (peak - before) * 1024, "hooks": parts.as_dict()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return
    if not Path("/proc/self/clear_refs").exists():
        sys.exit("this script reads /proc/self/status and needs Linux")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONPATH=str(ROOT))
    results = {}
    for name in CONFIGS:
        run = subprocess.run([sys.executable, __file__, "--child", name], env=env, capture_output=True,
                             text=True, check=True)
        results[name] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{name:28s} step peak over before: {results[name]['step_peak_over_before'] / 1e6:8.1f} MB")
    import torch

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": COMMAND, "torch": torch.__version__, "threads": 2, "seed": 0, "lora": LORA,
               "malloc_mmap_threshold": 65536, "configs": results}
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
