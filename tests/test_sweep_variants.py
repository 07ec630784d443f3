"""scripts/sweep_variants.py and scripts/sweep_rank_budget.py with tiny settings: the logic, not the numbers."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--steps", "2", "--batch-size", "2", "--block-size", "16", "--eval-every", "0", "--eval-windows", "2"]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variants_grid_then_best_lr_then_timing_and_resume(tmp_path, capsys, monkeypatch):
    script = _script("sweep_variants")
    monkeypatch.setattr(script, "LR_GRID", {**{v: (1e-3, 1e-2) for v in script.LR_GRID}, "dora": None})
    out = tmp_path / "variants.json"
    args = TINY + ["--variants", "lora", "dora", "loraplus", "--seeds", "0", "1", "--time-rounds", "1",
                   "--out", str(out)]
    script.main(args)
    record = json.loads(out.read_text())
    grid = {f"{v}/lr={lr:g}/seed=0" for v in ("lora", "loraplus") for lr in (1e-3, 1e-2)}
    chosen = record["chosen_lr"]
    assert chosen["dora"] == chosen["lora"]  # no grid of its own: LoRA's learning rate
    rest = {f"{v}/lr={lr:g}/seed={s}" for v, lr in chosen.items() for s in (0, 1)}
    assert set(record["runs"]) == grid | rest
    assert record["command"].startswith("python scripts/sweep_variants.py --steps 2")
    lr = chosen["lora"]
    dora, lora = record["runs"][f"dora/lr={lr:g}/seed=0"], record["runs"][f"lora/lr={lr:g}/seed=0"]
    assert dora["trainable_params"] > lora["trainable_params"]  # + one magnitude per output feature
    assert record["runs"]["loraplus/lr=0.01/seed=0"]["adapter"]["ratio"] == script.LORAPLUS_RATIO
    assert record["step_time"]["ratio_to_lora"]["lora"] == 1.0
    assert set(record["step_time"]["median_s"]) == {"lora", "dora", "loraplus"}
    capsys.readouterr()
    script.main(args)  # resume: nothing left to run
    assert "seed=" not in capsys.readouterr().out
    assert json.loads(out.read_text())["runs"] == record["runs"]


def test_variants_refuses_a_table_without_lora():
    with pytest.raises(SystemExit):
        _script("sweep_variants").parse(["--variants", "dora"])


def test_targets_study_has_an_equal_budget(tmp_path):
    script = _script("sweep_rank_budget")
    out = tmp_path / "targets.json"
    record = script.main(["targets", *TINY, "--seeds", "0", "--out", str(out)])
    counts = {run["trainable_params"] for run in record["runs"].values()}
    assert len(record["runs"]) == len(script.TABLE5) and len(counts) == 1
    assert record["runs"]["q_proj+k_proj+v_proj+o_proj/r=2/seed=0"]["adapter"]["alpha"] == 4.0  # alpha / r = 2
    assert json.loads(out.read_text())["settings"]["scale"] == 2.0


def test_rank_study_runs_lora_and_rslora(tmp_path):
    script = _script("sweep_rank_budget")
    out = tmp_path / "rank.json"
    record = script.main(["rank", *TINY, "--seeds", "0", "--ranks", "1", "4", "--rs-ranks", "4", "--out", str(out)])
    assert set(record["runs"]) == {"lora/r=1/seed=0", "lora/r=4/seed=0", "rslora/r=4/seed=0"}
    assert record["runs"]["rslora/r=4/seed=0"]["mean_delta_norm"] > 0


def test_subspace_study_stores_grids_per_layer(tmp_path):
    script = _script("sweep_rank_budget")
    out = tmp_path / "subspace.json"
    record = script.main(["subspace", *TINY, "--subspace-ranks", "2", "6", "--out", str(out)])
    layer = record["layers"]["blocks.0.attn.q_proj"]
    assert len(layer["A"]) == 2 and len(layer["A"][0]) == 6 and 0 <= min(min(row) for row in layer["BA"])
    assert set(record["runs"]) == {"r=2/seed=0", "r=6/seed=1"}
    assert json.loads(out.read_text())["layers"].keys() == record["layers"].keys()


def test_budget_rank_refuses_an_uneven_split():
    with pytest.raises(ValueError, match="budget"):
        _script("sweep_rank_budget").budget_rank(("q_proj", "k_proj", "v_proj"))


def test_shards_split_the_jobs_and_share_one_file(tmp_path):
    script = _script("sweep_rank_budget")
    out = tmp_path / "rank.json"
    common = ["rank", *TINY, "--seeds", "0", "1", "--ranks", "1", "--rs-ranks", "2", "--out", str(out)]
    first = script.main(common + ["--shard", "0/2"])
    assert set(first["runs"]) == {"lora/r=1/seed=0", "rslora/r=2/seed=0"}  # every 2nd job from 0
    script.main(common + ["--shard", "1/2"])
    assert len(json.loads(out.read_text())["runs"]) == 4  # the second shard kept the first one's runs
    with pytest.raises(ValueError, match="shard"):
        script.shard([1, 2], "2/2")


def test_modules_study_compares_at_equal_rank_and_at_equal_budget(tmp_path):
    script = _script("sweep_rank_budget")
    out = tmp_path / "modules.json"
    record = script.main(["modules", *TINY, "--seeds", "0", "--out", str(out)])
    runs = record["runs"]
    count = lambda key: runs[f"{key}/seed=0"]["trainable_params"]  # noqa: E731
    assert set(runs) == {f"{n}/r={r}/seed=0" for n, _, r in script.MODULES}
    assert count("mlp/r=4") == count("attention/r=5") and count("all/r=4") == count("attention/r=9")
    assert count("attention/r=4") < count("mlp/r=4") < count("all/r=4")  # the same rank costs more on wider layers
    assert runs["mlp/r=4/seed=0"]["adapter"]["targets"] == ["up_proj", "down_proj"]
    assert runs["attention/r=9/seed=0"]["adapter"]["alpha"] == 18.0  # alpha / r = 2
