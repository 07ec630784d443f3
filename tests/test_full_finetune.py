"""scripts/full_finetune_delta.py on a tiny model: ΔW = W_ft − W_base per projection, seeded, small files."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from lora_scratch.data import load_tokens
from lora_scratch.files import load_tensors
from lora_scratch.gpt import GPT, GPTConfig
from lora_scratch.train import TrainConfig, load_checkpoint, save_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("full_finetune_delta", ROOT / "scripts" / "full_finetune_delta.py")
ffd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ffd)

STEPS, BATCH, BLOCK, LR, WARMUP = 4, 4, 32, 1e-2, 2


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 3-block GPT (so the sampled blocks.2 matrices exist), fine-tuned for a few steps by the script."""
    tmp = tmp_path_factory.mktemp("ffd")
    torch.manual_seed(0)
    save_checkpoint(GPT(GPTConfig(n_layer=3, n_head=2, n_embd=16, block_size=BLOCK)), tmp / "base.safetensors")
    argv = ["--base", str(tmp / "base.safetensors"), "--steps", str(STEPS), "--batch-size", str(BATCH),
            "--block-size", str(BLOCK), "--lr", str(LR), "--warmup", str(WARMUP), "--eval-every", "0",
            "--quiet", "--out", str(tmp / "out")]
    record = ffd.main(argv)
    return tmp, argv, record


def independent_finetune(base_path: Path) -> tuple[dict, dict]:
    """The same fine-tune done by hand with the training loop: (base state, fine-tuned state)."""
    model = load_checkpoint(base_path)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    for p in model.parameters():
        p.requires_grad_(True)
    cfg = TrainConfig(steps=STEPS, batch_size=BATCH, block_size=BLOCK, lr=LR, warmup=WARMUP, weight_decay=0.0,
                      eval_every=0)
    train(model, load_tokens("folio", "train"), cfg, progress=False)
    return base, model.state_dict()


def test_adapted_names_are_the_six_projections_of_every_block():
    names = ffd.adapted_names(GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=BLOCK)))
    assert len(names) == 12 and names[0] == "blocks.0.attn.q_proj.weight"
    assert names[-1] == "blocks.1.mlp.down_proj.weight"


def test_delta_is_finetuned_minus_base_per_projection(tiny_run):
    tmp, _, record = tiny_run
    base, ft = independent_finetune(tmp / "base.safetensors")
    spectra = load_tensors(tmp / "out" / "spectra.safetensors")
    sample = load_tensors(tmp / "out" / "delta_sample.safetensors")
    assert set(sample) == set(ffd.SAMPLE) and all(t.dtype == torch.float16 for t in sample.values())
    assert len(record["names"]) == 18
    steps = [1, 3]  # the SNAPSHOTS below STEPS
    assert record["snapshot_steps"] == steps
    assert set(spectra) == {f"{kind}/{n}" for kind in ("delta", "base", *[f"step/{k}" for k in steps])
                            for n in record["names"]}
    for name in record["names"]:
        delta = ft[name] - base[name]
        assert delta.abs().max() > 0, f"{name} did not change"
        expected = torch.linalg.svdvals(delta.double()).float()
        torch.testing.assert_close(spectra[f"delta/{name}"], expected, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(spectra[f"base/{name}"], torch.linalg.svdvals(base[name].double()).float())
        if name in sample:  # the sign: base + ΔW gives the fine-tuned weight back (to fp16 precision)
            torch.testing.assert_close(base[name] + sample[name].float(), ft[name], rtol=0, atol=2e-3)


def test_first_adam_step_moves_every_entry_by_the_learning_rate(tiny_run):
    """Adam's first step is lr · g / (|g| + eps) ≈ lr · sign(g): ‖ΔW_1‖_F ≈ lr_0 · √(entries)."""
    tmp, _, record = tiny_run
    spectra = load_tensors(tmp / "out" / "spectra.safetensors")
    lr0 = LR / WARMUP  # linear warm-up: step 0 runs at lr / warmup
    for name, shape in record["shapes"].items():
        norm = float(spectra[f"step/1/{name}"].double().pow(2).sum().sqrt())
        full = lr0 * (shape[0] * shape[1]) ** 0.5
        assert 0.9 * full < norm <= full * (1 + 1e-4), name


def test_record_has_config_losses_and_full_rank_truncation_equals_after(tiny_run):
    tmp, _, record = tiny_run
    on_disk = json.loads((tmp / "out" / "run.json").read_text())
    assert on_disk["train"]["weight_decay"] == 0.0 and on_disk["seed"] == 1337
    assert on_disk["command"].startswith("python scripts/full_finetune_delta.py --base")
    assert set(on_disk["before"]) == set(on_disk["after"]) == {"folio_val", "modern_val"}
    cut = on_disk["truncated"]
    assert cut["r"] == [0, 1, 2, 4, 8, 16]  # r ≤ 16, the smallest dimension
    for split, loss in on_disk["after"].items():  # rank 16 of a 16-wide ΔW is the whole ΔW
        assert cut[split][-1] == pytest.approx(loss, abs=1e-5)
        assert cut[split][0] != pytest.approx(loss, abs=1e-5)  # r = 0 drops the update: the loss moves
    assert on_disk["before"]["folio_val"] != on_disk["after"]["folio_val"]


def test_rerun_is_identical_and_files_are_small(tiny_run, tmp_path):
    tmp, argv, _ = tiny_run
    ffd.main([*argv[:-1], str(tmp_path)])
    for f in ("spectra.safetensors", "delta_sample.safetensors"):
        a, b = load_tensors(tmp / "out" / f), load_tensors(tmp_path / f)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert sum(f.stat().st_size for f in (tmp / "out").iterdir()) < 100_000
