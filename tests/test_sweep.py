"""scripts/sweep_lora_vs_full.py: a few steps on tiny windows, and resuming skips finished runs."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("sweep", ROOT / "scripts" / "sweep_lora_vs_full.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    args = ["--steps", "2", "--batch-size", "2", "--block-size", "16", "--eval-every", "0", "--eval-windows", "2",
            "--lora-lrs", "1e-2", "--full-lrs", "1e-4", "--seeds", "0", "--out", str(out)]
    sweep = _script()
    sweep.main(args)
    record = json.loads(out.read_text())
    assert set(record["runs"]) == {"lora/lr=0.01/seed=0", "full/lr=0.0001/seed=0"}
    lora, full = record["runs"]["lora/lr=0.01/seed=0"], record["runs"]["full/lr=0.0001/seed=0"]
    assert lora["trainable_fraction"] < full["trainable_fraction"] == 1.0
    assert lora["before"] == full["before"] == record["before"]  # same base, same evaluation windows
    capsys.readouterr()
    sweep.main(args)  # resume: nothing left to run
    assert "seed=0" not in capsys.readouterr().out
    assert json.loads(out.read_text())["runs"] == record["runs"]


def test_labelled_lora_settings_are_separate_runs(tmp_path):
    out = tmp_path / "why.json"
    common = ["--steps", "2", "--batch-size", "2", "--block-size", "16", "--eval-every", "0", "--eval-windows", "2",
              "--methods", "lora", "--lora-lrs", "1e-2", "--seeds", "0", "--out", str(out)]
    sweep = _script()
    sweep.main(common)
    sweep.main(common + ["--label", "lora-r1-qv", "--lora-r", "1", "--lora-alpha", "2",
                         "--lora-targets", "q_proj", "v_proj"])
    record = json.loads(out.read_text())
    small, usual = record["runs"]["lora-r1-qv/lr=0.01/seed=0"], record["runs"]["lora/lr=0.01/seed=0"]
    assert small["method"] == "lora-r1-qv" and small["lora"] == {"r": 1, "alpha": 2.0, "targets": ["q_proj", "v_proj"]}
    assert small["trainable_fraction"] < usual["trainable_fraction"]
    assert len(record["commands"]) == 2 and record["command"] == record["commands"][0]
