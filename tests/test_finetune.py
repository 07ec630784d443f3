"""lora_scratch.finetune: LoRA vs full fine-tuning helpers."""
import math

import pytest
import torch

from lora_scratch.finetune import (
    ALL_PROJECTIONS,
    FinetuneConfig,
    best_lr,
    choose_targets,
    finetune,
    folio_gain,
    forgetting,
    forgetting_at_gain,
    frontier_gap,
    interleaved_step_times,
    median_ratio,
    optimizer_state_bytes,
    prepare,
    sweep_curves,
    trainable_fraction,
)
from lora_scratch.memory_measure import optimizer_state_bytes as measured_state_bytes
from lora_scratch.train import TrainConfig, make_optimizer

TINY = dict(steps=2, batch_size=2, block_size=16, warmup=1, eval_every=0, eval_windows=2)


def test_choose_targets():
    assert choose_targets("all") == list(ALL_PROJECTIONS)
    assert choose_targets("mlp") == ["up_proj", "down_proj"]
    with pytest.raises(ValueError, match="attention"):
        choose_targets("heads")


def test_trainable_fraction_lora_is_small_and_full_is_one():
    lora, full = prepare("lora", r=2, alpha=4), prepare("full")
    assert trainable_fraction(full) == 1.0
    n_lora = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    assert n_lora == 6 * (4 * 2 * (160 + 160) + 2 * 2 * (160 + 640))  # 6 blocks, r = 2
    assert 0 < trainable_fraction(lora) < 0.05


def test_optimizer_state_bytes_matches_real_adam_state():
    model = prepare("lora", r=2, alpha=4)
    opt = make_optimizer(model, TrainConfig())
    x = torch.randint(0, 256, (1, 8))
    model(x, x)[1].backward()
    opt.step()
    n_tensors = sum(1 for p in model.parameters() if p.requires_grad)
    # the real state also holds one scalar step counter (4 bytes) per tensor
    assert measured_state_bytes(opt) == optimizer_state_bytes(model) + 4 * n_tensors


def test_signs():
    assert forgetting(before=1.5, after=1.6) == pytest.approx(0.1)
    assert folio_gain(before=1.9, after=1.5) == pytest.approx(0.4)


def test_prepare_refuses_unknown_method():
    with pytest.raises(ValueError, match="lora"):
        prepare("qlora")


def test_finetune_record_and_lora_starts_at_base():
    model = prepare("lora", r=2, alpha=4)
    record = finetune(model, FinetuneConfig(lr=1e-2, **TINY))
    assert set(record["after"]) == {"folio_val", "modern_val"}
    assert record["optimizer_state_bytes"] == optimizer_state_bytes(model)
    assert record["after"]["folio_val"] != record["before"]["folio_val"]  # B moved off zero


def test_interleaved_step_times_gives_one_time_per_round():
    cfg = FinetuneConfig(lr=1e-3, **TINY)
    times = interleaved_step_times({"lora": prepare("lora"), "full": prepare("full")}, cfg, rounds=3, warmup=1)
    assert [len(t) for t in times.values()] == [3, 3]
    assert median_ratio([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]) == 1.0


def _run(method, lr, seed, gains, forgets):
    before = {"folio_val": 2.0, "modern_val": 1.5}
    return {"method": method, "config": {"lr": lr}, "before": before, "steps": [40, 80],
            "val": {"folio_val": [2.0 - g for g in gains], "modern_val": [1.5 + f for f in forgets]}}


def test_sweep_curves_best_lr_and_frontier():
    record = {"runs": {"a": _run("lora", 1e-3, 0, [0.1, 0.2], [0.05, 0.1]),
                       "b": _run("lora", 1e-3, 1, [0.3, 0.4], [0.15, 0.2]),
                       "c": _run("lora", 1e-2, 0, [0.3, 0.35], [0.3, 0.2])}}
    curves = sweep_curves(record)
    assert curves[("lora", 1e-3)]["gain"] == pytest.approx([0.2, 0.3]) and curves[("lora", 1e-3)]["seeds"] == 2
    assert curves[("lora", 1e-3)]["forget_std"][0] == pytest.approx(0.1 / 2 ** 0.5)
    assert best_lr(curves, "lora") == 1e-2  # largest mean gain after the last step
    assert best_lr(curves, "lora", tie=0.06) == 1e-3  # within the tie: the smaller learning rate
    frontier = forgetting_at_gain(curves, "lora", [0.25, 0.31, 0.5])
    assert frontier[:2] == pytest.approx([0.15, 0.2]) and math.isnan(frontier[2])


def test_frontier_gap_compares_at_equal_gain_and_ignores_noise_off_the_frontier():
    runs = {f"{m}{lr}{s}": _run(m, lr, s, g, f) for m, lr, s, g, f in [
        ("full", 1e-4, 0, [0.1, 0.3], [0.05, 0.10]), ("full", 1e-4, 1, [0.1, 0.3], [0.05, 0.10]),
        ("lora", 1e-2, 0, [0.1, 0.3], [0.07, 0.12]), ("lora", 1e-2, 1, [0.1, 0.3], [0.07, 0.12]),
        ("lora", 1e-1, 0, [0.0, 0.2], [0.9, 0.5]), ("lora", 1e-1, 1, [0.0, 0.2], [0.1, 0.9])]}  # diverging, noisy
    gap = frontier_gap(sweep_curves({"runs": runs}), "lora", "full", points=3)
    assert gap["gains"] == pytest.approx([0.1, 0.2, 0.3]) and gap["diff"] == pytest.approx([0.02, 0.02, 0.02])
    assert gap["noise"] == 0.0  # the noisy lr never sets the frontier
    with pytest.raises(ValueError, match="need runs of both"):
        frontier_gap(sweep_curves({"runs": runs}), "lora-r8", "full")
