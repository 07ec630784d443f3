"""A GPU check for when a GPU is lent (never needed for CI): predicted vs measured memory, serving, notebooks.

    python scripts/gpu_check.py --out gpu_check.json   # on one GPU: sized to fit in 8 minutes
    python scripts/gpu_check.py --cpu                  # the same code paths on the CPU, smallest settings (seconds)
    python scripts/gpu_check.py --cpu --notebooks      # ... and the three notebooks too, on the CPU

1. Memory. The tiny GPT and GPT-2 small shapes; full fine-tuning, LoRA (q and v, r 8: memory.py's defaults) and
   QLoRA (every block matrix in NF4, the same adapter); fp32 and bf16 (model.to(torch.bfloat16), memory.py's
   "bf16" precision); fused AdamW. lora_scratch.memory.memory_breakdown predicts; one warm-up step creates Adam's
   m and v, then one measured step: the four parts by saved-tensor hooks (lora_scratch.memory_measure) and, on a
   GPU, torch.cuda.max_memory_allocated minus what was allocated before the model was built.
2. Serving. 8 requests over the 3 shipped adapters and the base, greedy: one at a time with load_adapter swapping
   adapters, against one serve.generate_many batch. Tokens per second, and whether the tokens are the same.
3. Notebooks 00, 04 and 07 run on a copy with DEVICE = "cuda" (scripts/bench_course.py's time_notebook and
   scripts/execute_notebooks.py's execute; the stored notebooks are never written).
"""
from __future__ import annotations

import argparse
import copy
import gc
import importlib.util
import os
import re
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lora_scratch import GPT, GPTConfig, add_lora, load_adapter, lora_disabled, mark_only_lora_as_trainable  # noqa: E402
from lora_scratch import memory as mem  # noqa: E402
from lora_scratch.bench import STRICT_TIMING_ENV  # noqa: E402
from lora_scratch.data import data_dir, encode  # noqa: E402
from lora_scratch.files import atomic_write_json  # noqa: E402
from lora_scratch.memory_measure import fused_adamw, measure_training_step  # noqa: E402
from lora_scratch.quant import quantize_base  # noqa: E402
from lora_scratch.serve import generate_many  # noqa: E402
from lora_scratch.train import load_base  # noqa: E402

MiB = 2**20
GPU_BUDGET_S = 8 * 60
LORA = {"targets": ("q_proj", "v_proj"), "r": 8, "alpha": 16.0}
SHAPES = {"cuda": {"tiny": (32, 256), "gpt2_small": (4, 256)},  # preset -> (batch, seq)
          "cpu": {"tiny": (2, 32)}}
METHODS = ("full", "lora", "qlora")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
NEW_TOKENS = {"cuda": 100, "cpu": 3}
ADAPTERS = {name: data_dir() / "adapters" / name for name in ("folio", "milton", "sonnets")}
PROMPTS = ["KING.\n", "To be, or not to be", "Of Mans First Disobedience", "Shall I compare thee",
           "Now is the winter", "O", "Th", "When I consider how my light is spent"]
NOTEBOOKS = ("00", "04", "07")
NOTES = [
    "predicted: memory.py's weights + gradients + optimizer state + activations; its activation count is exact "
    "for fp32 eager PyTorch on a CPU, 16-bit activations are that count times 2 bytes (an estimate).",
    "not in the prediction, in the CUDA peak: backward temporaries (the logits' gradient, (B*T, vocab)), "
    "QLoRA's dequantized weights during forward and backward, cuBLAS workspace, allocator rounding (512 B blocks); "
    "CUDA's attention kernels save their own log-sum-exp layout. The CUDA context is in neither.",
    "hooks: tensor sizes from lora_scratch.memory_measure (what autograd saves, de-duplicated); on the CPU "
    "there is no allocator peak (scripts/measure_memory.py reads peak RSS instead).",
]


def load_script(name: str):
    """scripts/<name>.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_gpu_check_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(device: str, fn):
    """fn()'s result and its wall time in seconds, with the GPU's queued work included."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


# --- 1. Memory -----------------------------------------------------------------------------------------------------

def build(cfg: GPTConfig, method: str, dtype: str, device: str) -> GPT:
    """A GPT set up as memory.py models `method`: QLoRA quantizes every block matrix, LoRA and QLoRA train A, B."""
    torch.manual_seed(0)
    model = GPT(cfg)
    if method == "qlora":  # NF4 from the fp32 weights, on the CPU where quant.py's level table lives
        quantize_base(model, list(mem.LINEARS))
    if method != "full":
        add_lora(model, list(LORA["targets"]), r=LORA["r"], alpha=LORA["alpha"])
        mark_only_lora_as_trainable(model)
    with torch.no_grad():  # parameters in the computation dtype; NF4's codes and scales are buffers and stay
        for p in model.parameters():
            p.data = p.data.to(DTYPES[dtype])
    return model.to(device)


def measure_row(preset: str, method: str, dtype: str, batch: int, seq: int, device: str) -> dict:
    """memory.py's prediction beside one measured AdamW step (after a warm-up step) of that model and batch."""
    cfg = getattr(GPTConfig, preset)()
    predicted = mem.memory_breakdown(cfg, batch, seq, method, dtype, "adamw", LORA["targets"], LORA["r"])
    row = {"shape": preset, "method": method, "dtype": dtype, "batch": batch, "seq": seq,
           "predicted": predicted.as_dict(), "predicted_bytes": predicted.total,
           "hooks": None, "hooks_bytes": None, "peak_bytes": None, "peak_over_predicted": None, "error": None}
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
    try:
        model = build(cfg, method, dtype, device)
        x, y = (torch.randint(0, cfg.vocab_size, (batch, seq), device=device) for _ in range(2))
        optimizer = fused_adamw([p for p in model.parameters() if p.requires_grad])
        same = lambda params: optimizer  # noqa: E731  one optimizer for both steps: m and v exist in the second
        measure_training_step(model, x, y, make_optimizer=same)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        parts = measure_training_step(model, x, y, make_optimizer=same)
        row["hooks"], row["hooks_bytes"] = parts.as_dict(), parts.total
        if device == "cuda":
            torch.cuda.synchronize()
            row["peak_bytes"] = torch.cuda.max_memory_allocated() - before
            row["peak_over_predicted"] = row["peak_bytes"] / predicted.total
    except RuntimeError as error:  # a CUDA out-of-memory or an unsupported set-up: a row, not a crash
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return row


def print_memory(rows: list[dict], notes: list[str], device: str) -> None:
    print(f"{'shape':11s} {'method':6s} {'dtype':5s} {'B x T':>8s} {'predicted MiB':>14s} {'hooks MiB':>10s} "
          f"{'CUDA peak MiB':>14s} {'peak/pred':>9s}")
    for r in rows:
        hooks = f"{r['hooks_bytes'] / MiB:10.1f}" if r["hooks_bytes"] is not None else f"{'-':>10s}"
        if r["peak_bytes"] is not None:
            peak = f"{r['peak_bytes'] / MiB:14.1f} {r['peak_over_predicted']:9.2f}"
        else:
            peak = f"{'n/a on CPU' if device == 'cpu' else '-':>14s} {'-':>9s}"
        line = (f"{r['shape']:11s} {r['method']:6s} {r['dtype']:5s} {r['batch']:>3d}x{r['seq']:<4d} "
                f"{r['predicted_bytes'] / MiB:14.1f} {hooks} {peak}")
        print(line + (f"   FAILED: {r['error']}" if r["error"] else ""))
    for note in notes:
        print(f"note: {note}")


def memory_section(device: str) -> dict:
    rows = [measure_row(preset, method, dtype, batch, seq, device)
            for preset, (batch, seq) in SHAPES[device].items() for method in METHODS for dtype in DTYPES]
    notes = list(NOTES)
    print_memory(rows, notes, device)
    return {"lora": {**LORA, "targets": list(LORA["targets"])}, "optimizer": "adamw (fused)", "rows": rows,
            "notes": notes}


# --- 2. Serving ----------------------------------------------------------------------------------------------------

def one_at_a_time(model: GPT, requests: list, new: int, device: str) -> list[torch.Tensor]:
    """Each request alone: swap its adapter in with load_adapter (the base: adapters disabled), then decode."""
    outs = []
    for name, prompt in requests:
        if name is not None:
            load_adapter(model, ADAPTERS[name])
        with lora_disabled(model) if name is None else nullcontext():
            outs.append(model.generate(prompt.to(device)[None], new, top_k=1)[0])
    return outs


def serving_section(device: str, new: int) -> dict:
    base = load_base().to(device).eval()
    names = [("folio", "milton", "sonnets", None)[i % 4] for i in range(len(PROMPTS))]
    requests = [(name, encode(text)) for name, text in zip(names, PROMPTS)]
    swapping = copy.deepcopy(base)
    one_at_a_time(swapping, requests[:4], 2, device)  # warm-up: kernels, caches, the adapters' LoRA layers
    generate_many(base, ADAPTERS, requests[:4], 2, top_k=1)
    swapped, swap_s = timed(device, lambda: one_at_a_time(swapping, requests, new, device))
    batched, batch_s = timed(device, lambda: generate_many(base, ADAPTERS, requests, new, top_k=1))
    same = [torch.equal(a.cpu(), b.cpu()) for a, b in zip(swapped, batched)]
    tokens = new * len(requests)
    result = {"requests": len(requests), "adapters": [n or "base" for n in names], "new_tokens": new,
              "swapping": {"seconds": swap_s, "tokens_per_s": tokens / swap_s},
              "generate_many": {"seconds": batch_s, "tokens_per_s": tokens / batch_s},
              "speedup": swap_s / batch_s, "equal_tokens": all(same), "requests_equal": sum(same)}
    print(f"{len(requests)} requests x {new} new tokens (greedy), adapters {', '.join(result['adapters'])}")
    for key in ("swapping", "generate_many"):
        print(f"  {key:14s} {result[key]['seconds']:8.3f} s  {result[key]['tokens_per_s']:10.1f} tokens/s")
    print(f"  generate_many is {result['speedup']:.2f}x faster; same tokens in {sum(same)} of {len(same)} requests")
    return result


# --- 3. Notebooks --------------------------------------------------------------------------------------------------

def set_device(path: Path, device: str) -> None:
    """Rewrite the notebook's one `DEVICE = "cpu"` line (a copy: bench_course.time_notebook runs it in a temp dir)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    found = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source, n = re.subn(r'^DEVICE = "cpu"', f'DEVICE = "{device}"', cell.source, flags=re.M)
            found += n
    if found != 1:
        raise ValueError(f"{path.name}: expected one line starting `DEVICE = \"cpu\"` to switch, found {found}; "
                         "update scripts/gpu_check.py to how the notebook picks its device now")
    nbformat.write(nb, path)


def notebooks_section(device: str) -> list[dict]:
    bench_course = load_script("bench_course")
    execute = load_script("execute_notebooks").execute
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.environ.pop(STRICT_TIMING_ENV, None)  # the notebooks' timing claims are about the CPU: print them only

    def on_device(copy_path: Path) -> float:
        set_device(copy_path, device)
        return execute(copy_path, write=False, timeout=120)  # per cell: the slowest takes about 20 s on 2 CPU cores

    rows = []
    for prefix in NOTEBOOKS:
        path = next(bench_course.SOLUTIONS.glob(f"{prefix}_*.ipynb"))
        row = {**bench_course.time_notebook(path, on_device), "device": device}
        print(f"{path.name:40s} {row['seconds']:7.1f} s  " + ("passed" if row["ok"] else f"FAILED: {row['error']}"),
              flush=True)
        rows.append(row)
    return rows


# --- All three -----------------------------------------------------------------------------------------------------

def machine(device: str) -> dict:
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    return {"device": device, "gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda,
            "threads": torch.get_num_threads()}


def section(title: str, fn, seconds: dict):
    print(f"\n== {title} ==", flush=True)
    out, seconds[title] = timed("cpu", fn)
    print(f"({title}: {seconds[title]:.1f} s)", flush=True)
    return out


def run_all(device: str, notebooks: bool, command: str) -> dict:
    start, seconds = time.perf_counter(), {}
    record = {"command": command, "machine": machine(device)}
    print(f"gpu_check on {record['machine']['gpu'] or 'the CPU'} · torch {torch.__version__}")
    record["memory"] = section("memory", lambda: memory_section(device), seconds)
    record["serving"] = section("serving", lambda: serving_section(device, NEW_TOKENS[device]), seconds)
    record["notebooks"] = section("notebooks", lambda: notebooks_section(device), seconds) if notebooks else None
    if not notebooks:
        print("\nnotebooks: skipped on the CPU (pass --notebooks to run them)")
    record["seconds"] = {**seconds, "total": time.perf_counter() - start}
    print(f"\ntotal {record['seconds']['total']:.1f} s")
    if device == "cuda" and record["seconds"]["total"] > GPU_BUDGET_S:
        print(f"OVER the {GPU_BUDGET_S} s budget: shrink SHAPES or NEW_TOKENS in scripts/gpu_check.py")
    return record


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="run every code path on the CPU with the smallest settings")
    p.add_argument("--notebooks", action="store_true", help="with --cpu: also run the notebooks (minutes)")
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = p.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False). This check is for a lent GPU; "
                 "to run the same code paths on the CPU with the smallest settings, pass --cpu: "
                 "python scripts/gpu_check.py --cpu")
    device = "cpu" if args.cpu else "cuda"
    command = "python scripts/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    threads = torch.get_num_threads()
    if args.cpu:
        torch.set_num_threads(1)  # the smallest shapes: a second thread only waits (and tests share the cores)
    try:
        record = run_all(device, device == "cuda" or args.notebooks, command)
    finally:
        torch.set_num_threads(threads)  # as it was, for whoever called main() (a test session)
    if args.out:
        atomic_write_json(args.out, record)
        print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
