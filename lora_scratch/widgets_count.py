"""The LoRA budget calculator of 03_parameter_count: a text table and a bar chart, static or live.

    show_budget("gpt2_small", r=8, targets=("q_proj", "v_proj"))   # a static table + chart
    calculator()                                                  # the same with ipywidgets controls

Every number comes from lora_scratch.counting (gpt_params, lora_budget, projection_shapes).
"""
from __future__ import annotations

import matplotlib.pyplot as plt

from .counting import PRESETS, TARGETS, checkpoint_bytes, gpt_params, lora_budget, projection_shapes

LABELS = {"tiny": "tiny GPT (our base)", "gpt2_small": "GPT-2 small", "gpt2_medium": "GPT-2 medium",
          "gpt2_large": "GPT-2 large", "gpt2_xl": "GPT-2 XL", "gpt3_175b": "GPT-3 175B (shapes)"}
RANKS = (1, 2, 4, 8, 16, 32, 64)


def human(n: float, unit: str = "") -> str:
    """124439808 -> '124.4M'; 37748736 bytes -> '37.7 MB'. Decimal prefixes, as the papers use them."""
    prefixes = ("T", "G", "M", "k") if unit else ("T", "B", "M", "K")  # bytes: GB; counts: B (billion)
    for factor, prefix in zip((1e12, 1e9, 1e6, 1e3), prefixes):
        if abs(n) >= factor:
            return f"{n / factor:.1f} {prefix}{unit}" if unit else f"{n / factor:.1f}{prefix}"
    return f"{n:,.0f} {unit}".strip()


def budget_table(preset: str, r: int, targets: tuple[str, ...] | list[str]) -> str:
    """A text table: each adapted matrix's LoRA parameters, the total, its share, fp16 file sizes."""
    cfg, targets = PRESETS[preset], list(dict.fromkeys(targets))
    total, shapes = gpt_params(cfg), projection_shapes(cfg)
    lines = [f"{LABELS[preset]}: {total:,} parameters, {cfg.n_layer} blocks, d_model {cfg.n_embd:,}",
             f"LoRA r = {r} on {', '.join(targets)}",
             f"{'matrix':10s} {'shape (in → out)':>18s} {'per block':>12s} {'all blocks':>14s}"]
    for t in targets:
        d_in, d_out = shapes[t]
        per_block = lora_budget(cfg, [t], r) // cfg.n_layer
        lines.append(f"{t:10s} {f'{d_in:,} → {d_out:,}':>18s} {per_block:>12,} {per_block * cfg.n_layer:>14,}")
    lora = lora_budget(cfg, targets, r)
    full_b, lora_b = checkpoint_bytes(total), checkpoint_bytes(lora)
    lines += [f"{'LoRA total':10s} {'':>18s} {'':>12s} {lora:>14,}  = {100 * lora / total:.3g} % of the model",
              f"fp16 files: full model {human(full_b, 'B')}, adapter {human(lora_b, 'B')} "
              f"({full_b / lora_b:,.0f}× smaller)"]
    return "\n".join(lines)


def plot_budget(preset: str, r: int, targets: tuple[str, ...] | list[str]) -> plt.Figure:
    """Horizontal bars on a log scale: full fine-tuning vs each adapted matrix vs the LoRA total."""
    cfg, targets = PRESETS[preset], list(dict.fromkeys(targets))
    total, lora = gpt_params(cfg), lora_budget(cfg, targets, r)
    names = ["full fine-tune"] + [f"LoRA {t}" for t in targets] + ["LoRA total"]
    values = [total] + [lora_budget(cfg, [t], r) for t in targets] + [lora]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    colors = ["tab:gray"] + ["tab:blue"] * len(targets) + ["tab:orange"]
    ax.barh(names[::-1], values[::-1], color=colors[::-1])
    for y, v in enumerate(values[::-1]):
        ax.text(v, y, f" {human(v)}", va="center", fontsize=9)
    ax.set_xscale("log")
    ax.set_xlim(min(values) / 3, total * 30)  # room for the labels right of the bars
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_title(f"{LABELS[preset]}, r = {r}: LoRA trains {100 * lora / total:.3g} % of the parameters")
    fig.tight_layout()
    return fig


def show_budget(preset: str = "gpt2_small", r: int = 8, targets: tuple[str, ...] = ("q_proj", "v_proj")) -> None:
    """Print the table and draw the chart for one setting (the calculator calls this on every change)."""
    if not targets:
        print("Choose at least one matrix to adapt.")
        return
    print(budget_table(preset, r, targets))
    plot_budget(preset, r, targets)
    plt.show()


def calculator():
    """ipywidgets controls (model preset, rank, which matrices) driving show_budget."""
    import ipywidgets as widgets

    return widgets.interact(
        show_budget,
        preset=widgets.Dropdown(options=[(label, key) for key, label in LABELS.items()], value="gpt2_small",
                                description="model"),
        r=widgets.SelectionSlider(options=RANKS, value=8, description="rank r"),
        targets=widgets.SelectMultiple(options=TARGETS, value=("q_proj", "v_proj"), rows=len(TARGETS),
                                       description="adapt"),
    )
