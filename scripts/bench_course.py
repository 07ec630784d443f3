"""The course benchmark: every solution notebook's run time, LoRA's speed ratios and memory predicted/measured.

    python scripts/bench_course.py                 # full run: writes data/bench/course.json and docs/BENCHMARK.md
    python scripts/bench_course.py --only 01,05    # a subset; prints only, unless --out is given
    python scripts/bench_course.py --skip speed,memory --out /tmp/course.json

Run it on a quiet machine: other jobs on the same cores slow every figure down (the load average before and
after is recorded so a reader can judge). What it measures:
1. Each master notebook in notebooks/solutions/ run top to bottom in a fresh kernel, exactly as
   scripts/execute_notebooks.py does (the ⏱ run times in the notebooks are measured that way) — but on a
   copy in a temporary folder, so the committed notebooks and their outputs are never touched. Their timing
   claims (lora_scratch.bench.timing_claim), only printed elsewhere, are asserted here: a notebook whose claim
   fails on this quiet machine is reported FAILED.
2. scripts/bench_lora.py's measurement (GPT-2-small shapes, lora_scratch.bench, interleaved rounds): the
   LoRA / full fine-tuning step-time ratio (Hu et al., 2021, §4.2) and the merged-LoRA / base latency ratio
   (§4.1: "no additional inference latency").
3. scripts/measure_memory.py's configurations, one fresh process each: lora_scratch.memory's prediction of
   gradients + optimizer state + activations against the saved-tensor hooks and the whole-process peak RSS.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "notebooks" / "solutions"
OUT_JSON = ROOT / "data" / "bench" / "course.json"
OUT_MD = ROOT / "docs" / "BENCHMARK.md"
COMMAND = "python scripts/bench_course.py"
PARTS = ("notebooks", "speed", "memory")
MB = 1e6


def load_script(name: str):
    """Import scripts/<name>.py as a module (scripts/ is not a package), to reuse its functions."""
    spec = importlib.util.spec_from_file_location(f"_course_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- The machine ---------------------------------------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (Linux), else whatever the platform reports."""
    info = Path("/proc/cpuinfo")
    found = re.search(r"^model name\s*:\s*(.+)$", info.read_text() if info.exists() else "", re.M)
    return found.group(1).strip() if found else (platform.processor() or platform.machine() or "unknown")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []  # not on Windows


def machine_info() -> dict:
    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


# --- 1. The notebooks ----------------------------------------------------------------------------------------------

def select(paths: list[Path], only: list[str] | None) -> list[Path]:
    """The notebooks whose name starts with one of `only` (all of them when `only` is empty)."""
    if not only:
        return paths
    chosen = [p for p in paths if any(p.name.startswith(prefix) for prefix in only)]
    missing = [prefix for prefix in only if not any(p.name.startswith(prefix) for p in paths)]
    if missing:
        names = ", ".join(p.name[:2] for p in paths)
        raise SystemExit(f"--only {','.join(missing)}: no such notebook in notebooks/solutions/ (there are: {names})")
    return chosen


def stated_time(path: Path) -> dict:
    """The ⏱ header of a notebook: teaching and exercise minutes, and the running time it states."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    header = next((line for c in nb.cells[:2] for line in c.source.splitlines() if "⏱" in line), "")
    found = {key: re.search(pattern, header) for key, pattern in (
        ("teaching_min", r"teaching (\d+) min"), ("exercises_min", r"exercises (\d+) min"),
        ("running_stated", r"running ([^(]+?)\s*(\(|$)"))}
    return {key: (m.group(1).strip() if key == "running_stated" else int(m.group(1))) if m else None
            for key, m in found.items()}


def time_notebook(path: Path, execute) -> dict:
    """Run a copy of the notebook in a fresh kernel inside a temporary folder; the original is not touched."""
    row = {"notebook": path.name, **stated_time(path)}
    with tempfile.TemporaryDirectory(prefix="bench_course_") as tmp:
        copy_path = Path(tmp) / path.name
        shutil.copy2(path, copy_path)
        start = time.perf_counter()
        try:
            row["seconds"] = round(execute(copy_path), 1)
            row["ok"] = True
        except Exception as error:  # noqa: BLE001 - one failing notebook must not stop the benchmark
            row["seconds"] = round(time.perf_counter() - start, 1)
            row["ok"] = False
            lines = [line for line in str(error).splitlines() if line.strip(" -")] or [""]
            # a timeout says what happened first; a cell's error ends with its exception line
            line = lines[0] if "Timeout" in type(error).__name__ else lines[-1]
            row["error"] = f"{type(error).__name__}: {line[:300]}"
    return row


def time_notebooks(paths: list[Path], execute=None) -> list[dict]:
    execute = execute or load_script("execute_notebooks").execute
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.environ["LORA_SCRATCH_TIMING"] = "strict"  # bench.timing_claim: the notebooks' timing claims must hold here
    rows = []
    for path in paths:
        row = time_notebook(path, execute)
        print(f"{path.name:45s} {row['seconds']:6.1f} s" + ("" if row["ok"] else f"   FAILED: {row['error']}"),
              flush=True)
        rows.append(row)
    return rows


# --- 2. Speed: scripts/bench_lora.py's measurement -----------------------------------------------------------------

def speed_ratios(n_layer: int = 12, seq: int = 128, r: int = 4, rounds: int = 5, threads: int = 1) -> dict:
    """LoRA step / full step and merged (unmerged) LoRA latency / base latency, GPT-2-small shapes, batch 1."""
    import torch

    from lora_scratch.bench import compare, ratio
    from lora_scratch.gpt import GPTConfig
    from lora_scratch.serve import merge_and_unload

    bench_lora = load_script("bench_lora")
    cfg = GPTConfig.gpt2_small()
    cfg.n_layer = n_layer
    targets = ["q_proj", "v_proj"]
    full, lora = bench_lora.build(cfg, targets, r, 2.0 * r)
    idx = torch.randint(0, cfg.vocab_size, (1, seq + 1), generator=torch.Generator().manual_seed(0))
    steps = compare({"full": bench_lora.train_step_fn(full, idx), "lora": bench_lora.train_step_fn(lora, idx)},
                    rounds=rounds, warmup=1, threads=threads, grad=True)
    full.eval()
    lora.eval()
    merged, x = merge_and_unload(copy.deepcopy(lora)), idx[:, :-1]
    lat = compare({"base": lambda: full(x), "unmerged": lambda: lora(x), "merged": lambda: merged(x)},
                  rounds=3 * rounds, warmup=1, threads=threads)
    return {"setting": {"n_layer": n_layer, "batch": 1, "seq": seq, "r": r, "targets": targets,
                        "rounds": rounds, "threads": threads},
            "full_step_ms": round(1e3 * steps["full"].median, 1), "base_forward_ms": round(1e3 * lat["base"].median, 2),
            "lora_over_full_step": round(ratio(steps, "lora", "full"), 3),
            "merged_over_base_latency": round(ratio(lat, "merged", "base"), 3),
            "unmerged_over_base_latency": round(ratio(lat, "unmerged", "base"), 3)}


# --- 3. Memory: lora_scratch.memory's prediction against scripts/measure_memory.py's measurement -------------------

def predicted_bytes(config: tuple, lora: dict) -> dict:
    """What lora_scratch.memory predicts for one measure_memory configuration (bytes)."""
    from lora_scratch import memory as mem
    from lora_scratch.gpt import GPTConfig

    preset, batch, seq, method, checkpointing = config
    b = mem.memory_breakdown(getattr(GPTConfig, preset)(), batch, seq, method, targets=tuple(lora["targets"]),
                             r=lora["r"], checkpointing=checkpointing)
    return {"gradients": b.gradients, "optimizer": b.optimizer, "activations": b.activations,
            "step": b.gradients + b.optimizer + b.activations}


def compare_memory(name: str, measured: dict, predicted: dict) -> dict:
    hooks = measured["hooks"]
    hooks_step = hooks["gradients"] + hooks["optimizer"] + hooks["activations"]
    return {"name": name, "predicted_step_mb": round(predicted["step"] / MB, 1),
            "hooks_step_mb": round(hooks_step / MB, 1),
            "rss_step_peak_mb": round(measured["step_peak_over_before"] / MB, 1),
            "hooks_over_predicted": round(hooks_step / predicted["step"], 4),
            "activations_hooks_over_predicted": round(hooks["activations"] / predicted["activations"], 4),
            "rss_over_predicted": round(measured["step_peak_over_before"] / predicted["step"], 3)}


def memory_ratios(names: list[str] | None = None) -> list[dict]:
    """Each configuration in a fresh process (measure_memory.py --child), compared with the prediction."""
    measure = load_script("measure_memory")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONPATH=str(ROOT))
    rows = []
    for name in names or list(measure.CONFIGS):
        run = subprocess.run([sys.executable, str(ROOT / "scripts" / "measure_memory.py"), "--child", name],
                             env=env, capture_output=True, text=True, check=True)
        measured = json.loads(run.stdout.strip().splitlines()[-1])
        rows.append(compare_memory(name, measured, predicted_bytes(measure.CONFIGS[name], measure.LORA)))
        print(f"{name:28s} predicted {rows[-1]['predicted_step_mb']:8.1f} MB · hooks/predicted "
              f"{rows[-1]['hooks_over_predicted']:.4f} · peak RSS/predicted {rows[-1]['rss_over_predicted']:.2f}",
              flush=True)
    return rows


# --- The report ----------------------------------------------------------------------------------------------------

def _notebook_table(rows: list[dict]) -> list[str]:
    lines = ["| notebook | ⏱ teaching (min) | ⏱ exercises (min) | running, as the notebook states | measured (s) |",
             "|---|---:|---:|---|---:|"]
    for row in rows:
        measured = f"{row['seconds']:.1f}" + ("" if row["ok"] else f" — **failed**: {row['error']}")
        lines.append(f"| `{row['notebook'].removesuffix('.ipynb')}` | {row['teaching_min'] or '–'} | "
                     f"{row['exercises_min'] or '–'} | {row['running_stated'] or '–'} | {measured} |")
    total = sum(row["seconds"] for row in rows)
    teach = sum(row["teaching_min"] or 0 for row in rows)
    exercises = sum(row["exercises_min"] or 0 for row in rows)
    lines.append(f"| **total** | {teach} | {exercises} | | **{total:.1f}** ({total / 60:.1f} min) |")
    slow = [row["notebook"] for row in rows if row["seconds"] > 90]
    lines.append("")
    lines.append(f"Budget (the course's design, also in the README): each notebook ≤ 90 s, all together ≤ 10 min. "
                 f"{'Over 90 s: ' + ', '.join(slow) + '.' if slow else 'Every notebook measured is within 90 s.'}")
    return lines


SPEED_ROWS = (("LoRA training step / full fine-tuning step", "lora_over_full_step",
               "LoRA paper §4.2, GPT-3 on V100s: 32.5 / 43.1 tokens/s = 0.75"),
              ("merged LoRA forward / base forward", "merged_over_base_latency", "1 (§4.1: no additional latency)"),
              ("unmerged LoRA forward / base forward", "unmerged_over_base_latency",
               "above 1: two extra small matmuls per adapted layer"))


def _speed_lines(speed: dict) -> list[str]:
    s = speed["setting"]
    return [f"GPT-2-small shapes, {s['n_layer']} layers, batch {s['batch']} × {s['seq']} tokens, LoRA r = {s['r']} on "
            f"{', '.join(s['targets'])}, {s['rounds']} interleaved rounds, {s['threads']} thread(s) "
            "(`lora_scratch.bench`, the measurement of `scripts/bench_lora.py`).", "",
            "| ratio of medians (same run) | measured | reference |", "|---|---:|---|",
            *(f"| {label} | {speed[key]:.2f} | {ref} |" for label, key, ref in SPEED_ROWS), "",
            f"(full fine-tuning step {speed['full_step_ms']:.0f} ms, base forward {speed['base_forward_ms']:.1f} ms "
            "— absolute times depend on the machine; read the ratios.)", "",
            f"The step-time ratio holds for this setting only (batch {s['batch']} × {s['seq']} tokens, "
            f"{s['threads']} thread): it depends on the tokens per step. A",
            "full step also runs Adam over every weight, a cost that does not grow with the batch and weighs heavily "
            "in a small",
            "step; with more tokens per step the matmuls dominate and the ratio should move toward the ratio of "
            "arithmetic",
            "(about two thirds, since LoRA skips the frozen weights' gradients)."]


def _memory_lines(rows: list[dict]) -> list[str]:
    lines = ["Gradients + optimizer state + activations of one AdamW step, fp32: `lora_scratch.memory` predicts, "
             "saved-tensor hooks and the whole-process peak RSS (one fresh process per configuration, "
             "`scripts/measure_memory.py --child`) measure.", "",
             "| configuration | predicted (MB) | hooks (MB) | hooks / predicted | peak RSS over start (MB) | "
             "RSS / predicted |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['predicted_step_mb']:.1f} | {r['hooks_step_mb']:.1f} | "
                     f"{r['hooks_over_predicted']:.4f} | {r['rss_step_peak_mb']:.1f} | {r['rss_over_predicted']:.2f} |")
    lines += ["", "Without checkpointing, hooks / predicted is 1 up to Adam's 4-byte step counters. With checkpointing "
              "the prediction includes the one block the backward recomputes, which the hooks cannot see (notebook 04, "
              "§7): there the peak RSS is the check. The RSS peak also holds the backward's short-lived temporaries."]
    return lines


def render_markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# Course benchmark", "",
             f"Generated by `{COMMAND}` from `{result.get('json', 'data/bench/course.json')}` — do not edit by hand; "
             "rerun the command.", "",
             f"- **Machine**: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}; {m['platform']}",
             f"- **Software**: Python {m['python']}, torch {m['torch']}, {m['torch_threads']} torch threads in the "
             "benchmark process (the notebooks set 2 themselves)",
             f"- **Date**: {m['date_utc']}; load average (1, 5, 15 min) before {result['load_before']}, "
             f"after {result['load_after']} — a load well above 0 means other jobs shared the cores",
             f"- **Wall time of the whole benchmark**: {result['wall_seconds'] / 60:.1f} min"]
    if result.get("partial"):
        lines += ["", f"⚠️ Partial run: {result['partial']}."]
    if "notebooks" in result:
        lines += ["", "## Notebooks (fresh kernel, top to bottom, solutions included)", ""]
        lines += _notebook_table(result["notebooks"])
    if "speed" in result:
        lines += ["", "## Speed", ""] + _speed_lines(result["speed"])
    if "memory" in result:
        lines += ["", "## Memory, predicted vs measured", ""] + _memory_lines(result["memory"])
    return "\n".join(lines) + "\n"


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", type=_csv, help="notebooks whose names start with these, comma-separated (e.g. 01,05)")
    p.add_argument("--skip", type=_csv, default=[], help=f"parts to leave out, comma-separated: {', '.join(PARTS)}")
    p.add_argument("--out", type=Path, help=f"JSON to write (a full run: {OUT_JSON.relative_to(ROOT)})")
    p.add_argument("--md", type=Path, help="Markdown report (a full run: docs/BENCHMARK.md; else --out with .md)")
    p.add_argument("--speed-layers", type=int, default=12, help="layers of the GPT-2-small shapes (12 = the real one)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the speed measurement")
    args = p.parse_args(argv)
    if set(args.skip) - set(PARTS):
        p.error(f"--skip {','.join(sorted(set(args.skip) - set(PARTS)))}: the parts are {', '.join(PARTS)}")
    return args


def output_paths(args: argparse.Namespace) -> tuple[Path | None, Path | None, str]:
    """Where to write: a full run goes to the committed files; a partial one only where --out says."""
    partial = "; ".join(filter(None, [f"notebooks {','.join(args.only)} only" if args.only else "",
                                      f"skipped {','.join(args.skip)}" if args.skip else ""]))
    if args.out is None:
        return (None, None, partial) if partial else (OUT_JSON, args.md or OUT_MD, partial)
    return args.out, args.md or args.out.with_suffix(".md"), partial


def run(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    result = {"command": COMMAND, "load_before": load_average(), "machine": machine_info()}
    if "notebooks" not in args.skip:
        print("notebooks (fresh kernel each, on a copy):", flush=True)
        result["notebooks"] = time_notebooks(select(sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb")), args.only))
        print(f"{'total':45s} {sum(r['seconds'] for r in result['notebooks']):6.1f} s", flush=True)
    if "speed" not in args.skip:
        print("speed (scripts/bench_lora.py's measurement) ...", flush=True)
        result["speed"] = speed_ratios(n_layer=args.speed_layers, rounds=args.rounds)
        print(json.dumps({k: v for k, v in result["speed"].items() if k != "setting"}), flush=True)
    if "memory" not in args.skip:
        print("memory (scripts/measure_memory.py's configurations, one process each):", flush=True)
        result["memory"] = memory_ratios()
    result["load_after"] = load_average()
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_json, out_md, partial = output_paths(args)
    result = run(args)
    if partial:
        result["partial"] = partial
    print(f"load average before {result['load_before']}, after {result['load_after']}; "
          f"{result['wall_seconds']:.0f} s in all")
    if out_json is None:
        print("partial run: nothing written (pass --out PATH to keep it; a full run writes "
              f"{OUT_JSON.relative_to(ROOT)} and {OUT_MD.relative_to(ROOT)})")
    else:
        result["json"] = str(out_json.relative_to(ROOT) if out_json.is_relative_to(ROOT) else out_json)
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        out_md.parent.mkdir(parents=True, exist_ok=True)
        out_md.write_text(render_markdown(result), encoding="utf-8")
        print(f"wrote {out_json} and {out_md}")
    failed = [r["notebook"] for r in result.get("notebooks", []) if not r["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
