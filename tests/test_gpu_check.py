"""scripts/gpu_check.py: its CPU mode runs every code path (the GPU run itself waits for a lent GPU)."""
import importlib.util
import json
from pathlib import Path

import nbformat
import pytest
import torch

from lora_scratch import GPTConfig
from lora_scratch import memory as mem

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    returned = gpu_check.main(["--cpu", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["memory"]["rows"] == json.loads(json.dumps(returned["memory"]["rows"]))
    return written


def test_every_memory_row_holds_memory_py_s_prediction_and_the_hooks_agree_in_fp32(record):
    rows = {(r["shape"], r["method"], r["dtype"]): r for r in record["memory"]["rows"]}
    assert set(rows) == {("tiny", m, d) for m in ("full", "lora", "qlora") for d in ("fp32", "bf16")}
    for (shape, method, dtype), row in rows.items():
        expected = mem.memory_breakdown(getattr(GPTConfig, shape)(), row["batch"], row["seq"], method, dtype,
                                        targets=("q_proj", "v_proj"), r=8)
        assert row["predicted_bytes"] == expected.total > 0 and row["predicted"] == expected.as_dict()
        assert row["peak_bytes"] is None  # no allocator peak on a CPU
        assert row["error"] is None and row["hooks_bytes"] > 0  # QLoRA in bf16 too: NF4 -> bf16 computation
    for method in ("full", "lora"):  # memory.py's count is exact in fp32 on a CPU
        row = rows[("tiny", method, "fp32")]
        assert row["hooks"]["activations"] == row["predicted"]["activations"]
        assert row["hooks"]["weights"] == row["predicted"]["weights"]
    assert rows[("tiny", "full", "fp32")]["predicted_bytes"] > rows[("tiny", "lora", "fp32")]["predicted_bytes"] \
        > rows[("tiny", "qlora", "fp32")]["predicted_bytes"]
    assert any("allocator" in note for note in record["memory"]["notes"])


def test_batched_serving_gives_the_tokens_of_swapping_adapters(record):
    serving = record["serving"]
    assert serving["equal_tokens"] and serving["requests_equal"] == serving["requests"] == 8
    assert set(serving["adapters"]) == {"folio", "milton", "sonnets", "base"}
    for key in ("swapping", "generate_many"):
        assert serving[key]["tokens_per_s"] > 0
    assert record["notebooks"] is None  # skipped on the CPU without --notebooks
    assert set(record["seconds"]) == {"memory", "serving", "total"} and record["machine"]["device"] == "cpu"


def test_without_a_gpu_and_without_cpu_it_says_to_pass_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="pass --cpu"):
        gpu_check.main([])


def test_the_three_notebooks_switch_their_one_device_line(tmp_path):
    for prefix in gpu_check.NOTEBOOKS:
        path = next((ROOT / "notebooks" / "solutions").glob(f"{prefix}_*.ipynb"))
        copy = tmp_path / path.name
        copy.write_bytes(path.read_bytes())
        gpu_check.set_device(copy, "cuda")
        code = "\n".join(c.source for c in nbformat.read(copy, as_version=4).cells if c.cell_type == "code")
        assert 'DEVICE = "cuda"' in code and 'DEVICE = "cpu"' not in code, path.name
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("device = 'cpu'")])
    nbformat.write(nb, tmp_path / "99_other.ipynb")
    with pytest.raises(ValueError, match="found 0"):
        gpu_check.set_device(tmp_path / "99_other.ipynb", "cuda")
