"""scripts/bench_lora.py: the step-time curve's mechanics on a micro model (no timing is asserted)."""
import importlib.util
import json
from pathlib import Path

from lora_scratch.gpt import GPTConfig

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_lora", ROOT / "scripts" / "bench_lora.py")
bench_lora = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_lora)

MICRO = GPTConfig(vocab_size=64, block_size=64, n_layer=1, n_head=2, n_embd=16)


def test_the_compute_only_bound_is_two_thirds_when_the_adapter_is_negligible():
    full, lora = bench_lora.build(GPTConfig(vocab_size=64, block_size=8, n_layer=2, n_head=4, n_embd=256),
                                  ["q_proj", "v_proj"], 1, 2.0)
    bound = bench_lora.matmul_flops(lora, 100, True) / bench_lora.matmul_flops(full, 100, False)
    assert 2 / 3 < bound < 2 / 3 + 0.01  # LoRA skips the weight-gradient GEMMs: (2 + 2) / (2 + 4)


def test_batches_above_one_run(monkeypatch):
    """--batch 2 used to crash: targets.view() on a non-contiguous slice."""
    monkeypatch.setattr(bench_lora.GPTConfig, "gpt2_small", classmethod(lambda cls: MICRO))
    bench_lora.main(["--n-layer", "1", "--batch", "2", "--seq", "16", "--rounds", "1", "--r", "2"])


def test_the_curve_writes_one_row_per_size_with_its_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_lora.GPTConfig, "gpt2_small", classmethod(lambda cls: MICRO))
    out = tmp_path / "curve.json"
    bench_lora.main(["--n-layer", "1", "--curve", "16,64", "--rounds", "1", "--out", str(out)])
    record = json.loads(out.read_text())
    assert [row["tokens"] for row in record["rows"]] == [16, 64]
    for row in record["rows"]:
        assert row["batch"] * row["seq"] == row["tokens"]
        for method in ("full", "lora"):
            parts = row[method]
            total = parts["forward_ms"] + parts["backward_ms"] + parts["optimizer_ms"]
            assert abs(total - parts["step_ms"]) < 0.2  # the parts are differences that add up to the step
        assert 0 < row["compute_only_bound"] < 1
    assert record["command"].startswith("python scripts/bench_lora.py --curve 16,64")
