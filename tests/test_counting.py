"""counting.py: the exact figures of 03_parameter_count, checked against real (meta-device) models."""
import matplotlib
import pytest
import torch
import torch.nn as nn

from lora_scratch import GPT, GPTConfig, LoRALinear, add_lora, mark_only_lora_as_trainable
from lora_scratch.counting import (
    ATTENTION,
    COMPONENTS,
    PRESETS,
    TARGETS,
    block_matrices,
    block_params,
    checkpoint_bytes,
    count_params,
    gpt3_budgets,
    gpt_param_breakdown,
    gpt_params,
    linear_params,
    lora_budget,
    lora_params,
    lora_theta,
    measured_breakdown,
)

matplotlib.use("Agg")
SMALL = GPTConfig.gpt2_small()


def meta_gpt(cfg: GPTConfig) -> GPT:
    """The real model's structure without allocating its weights (GPT-2 small would take 500 MB)."""
    with torch.device("meta"):
        return GPT(cfg)


def test_one_square_matrix_vs_its_rank_4_update():
    assert linear_params(768, 768, bias=False) == 589_824
    assert lora_params(768, 768, r=4) == 6_144 == 2 * 768 * 4
    assert f"{100 * 6_144 / 589_824:.2f} %" == "1.04 %"


def test_the_formulas_match_real_modules():
    assert count_params(nn.Linear(768, 768, bias=False)) == 589_824
    assert count_params(nn.Linear(768, 3072)) == linear_params(768, 3072) == 768 * 3072 + 3072
    layer = LoRALinear(nn.Linear(768, 3072), r=4)
    assert count_params(layer, trainable_only=True) == lora_params(768, 3072, 4) == (768 + 3072) * 4


def test_gpt2_small_has_exactly_124_439_808_parameters():
    assert gpt_params(SMALL) == count_params(meta_gpt(SMALL)) == 124_439_808


@pytest.mark.parametrize("cfg", [SMALL, GPTConfig.tiny(), GPTConfig(n_layer=2, n_head=2, n_embd=8, bias=False)],
                         ids=["gpt2_small", "tiny", "no_bias"])
def test_breakdown_sums_to_total_and_matches_named_parameters(cfg):
    breakdown = gpt_param_breakdown(cfg)
    assert set(breakdown) == set(COMPONENTS) and breakdown["head"] == 0
    assert sum(breakdown.values()) == gpt_params(cfg)
    assert measured_breakdown(meta_gpt(cfg)) == breakdown


def test_untied_head_counts_163_037_184():
    assert gpt_params(SMALL, tied=False) == 163_037_184
    model = meta_gpt(SMALL)
    with torch.device("meta"):
        model.lm_head.weight = nn.Parameter(torch.empty(SMALL.vocab_size, SMALL.n_embd))  # untie
    assert count_params(model) == 163_037_184
    assert measured_breakdown(model) == gpt_param_breakdown(SMALL, tied=False)


@pytest.mark.parametrize("bias", [True, False])
def test_block_anatomy_is_the_real_blocks_list_of_shapes(bias):
    cfg = GPTConfig(n_layer=1, n_head=4, n_embd=64, bias=bias)
    block = meta_gpt(cfg).blocks[0]
    assert block_matrices(cfg) == [(n, tuple(p.shape)) for n, p in block.named_parameters()]
    assert block_params(64, bias) == count_params(block)


def test_gpt2_small_block_by_hand():
    assert block_params(768) == 4 * (768 * 768 + 768) + (768 * 3072 + 3072) + (3072 * 768 + 768) + 2 * 2 * 768
    assert 12 * block_params(768) + 50257 * 768 + 1024 * 768 + 2 * 768 == 124_439_808


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_matches_its_meta_model(name):
    assert count_params(meta_gpt(PRESETS[name])) == gpt_params(PRESETS[name])


@pytest.mark.parametrize("targets, r", [(("q_proj", "v_proj"), 4), (ATTENTION, 2), (TARGETS, 8), (("up_proj",), 1),
                                        (("q_proj", "q_proj"), 3)])
def test_lora_budget_equals_count_after_add_lora(targets, r):
    cfg = GPTConfig.tiny()
    torch.manual_seed(0)
    model = add_lora(GPT(cfg), targets=list(targets), r=r)
    mark_only_lora_as_trainable(model)
    assert count_params(model, trainable_only=True) == lora_budget(cfg, targets, r)
    assert count_params(model) == gpt_params(cfg) + lora_budget(cfg, targets, r)
    assert measured_breakdown(model)["LoRA"] == lora_budget(cfg, targets, r)


def test_gpt2_small_budgets():
    assert lora_budget(SMALL, ["q_proj", "v_proj"], 4) == 147_456
    assert lora_budget(SMALL, ["q_proj", "v_proj"], 8) == 294_912
    assert lora_budget(SMALL, ATTENTION, 8) == 589_824  # as many numbers as one 768 x 768 matrix
    assert lora_budget(SMALL, TARGETS, 8) == 1_327_104
    # Raschka (LLMs from Scratch, App. E): r = 16 on every Linear + a 768 -> 2 classifier head = 2.67M
    assert lora_budget(SMALL, TARGETS, 16) + lora_params(768, 2, 16) == 2_666_528
    model = add_lora(meta_gpt(SMALL), targets=["q_proj", "v_proj"], r=8)
    assert count_params(model) - gpt_params(SMALL) == 294_912


@pytest.mark.parametrize("targets, r, match", [(["lm_head"], 4, "lm_head is tied"), (["qproj"], 4, "q_proj"),
                                               ([], 4, "choose from"), (["q_proj"], 0, "positive integer"),
                                               (["q_proj"], 2.5, "positive integer")])
def test_lora_budget_refuses_bad_input(targets, r, match):
    with pytest.raises(ValueError, match=match):
        lora_budget(SMALL, targets, r)


def test_gpt3_budgets_of_the_lora_paper():
    budgets = gpt3_budgets()
    assert list(budgets.values()) == [4_718_592, 4_718_592, 37_748_736, 37_748_736, 18_874_368, 18_874_368]
    cfg = PRESETS["gpt3_175b"]
    assert (cfg.n_embd, cfg.n_layer) == (12_288, 96)
    assert lora_theta(12_288, 2 * 96, 1) == lora_budget(cfg, ["q_proj", "v_proj"], 1) == 4_718_592
    assert lora_theta(12_288, 4 * 96, 4) == lora_budget(cfg, ATTENTION, 4) == 37_748_736


def test_gpt3_checkpoint_350_gb_to_35_mb():
    adapter = checkpoint_bytes(lora_budget(PRESETS["gpt3_175b"], ["q_proj", "v_proj"], 4))
    assert adapter == 2 * 96 * 2 * 12_288 * 4 * 2 == 37_748_736  # bytes: 37.7 MB, the paper's "35MB"
    assert round(adapter / 1e6, 1) == 37.7 and round(adapter / 2**20, 1) == 36.0
    full = checkpoint_bytes(gpt_params(PRESETS["gpt3_175b"]))
    assert gpt_params(PRESETS["gpt3_175b"]) == 174_604_259_328 and round(full / 1e9, 1) == 349.2  # "350GB"
    assert 9_000 < full / adapter < 10_000  # the paper's "≈10,000×"
    cfg = PRESETS["gpt3_175b"]
    assert (cfg.vocab_size + cfg.block_size) * cfg.n_embd / gpt_params(cfg) < 0.004  # assumptions barely matter


def test_calculator_table_and_chart(capsys):
    from lora_scratch.widgets_count import budget_table, human, plot_budget, show_budget

    table = budget_table("gpt3_175b", 4, ("q_proj", "v_proj"))
    assert "18,874,368" in table and "37.7 MB" in table and "349.2 GB" in table
    assert human(124_439_808) == "124.4M" and human(37_748_736, "B") == "37.7 MB"
    fig = plot_budget("gpt2_small", 8, ("q_proj", "v_proj"))
    assert "0.237 %" in fig.axes[0].get_title()
    show_budget("tiny", 4, ())
    assert "at least one" in capsys.readouterr().out
