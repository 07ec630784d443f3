"""lora_scratch.capstone: the capstone's measurable rubric items, on adapters a class would hand in."""
import json
import shutil

import pytest

from lora_scratch import capstone
from lora_scratch.data import data_dir
from lora_scratch.finetune import prepare
from lora_scratch.lora import save_adapter


@pytest.fixture(scope="module")
def base_losses():
    from lora_scratch.train import load_base

    return capstone.held_out(load_base().eval())


def statuses(items):
    return {it.item: it.status for it in items}


def test_a_fresh_in_budget_adapter_that_learned_nothing_yet(tmp_path, base_losses):
    model = prepare("lora", targets=["q_proj", "v_proj"], r=8, alpha=16.0)  # B = 0: exactly the base
    save_adapter(model, tmp_path / "a", info={"train": {"batch_size": 8, "block_size": 128}})
    items = capstone.check(tmp_path / "a", base_losses)
    assert statuses(items) == {"loads": "pass", "original": "pass", "budget": "pass", "learned": "fail",
                               "baseline": "fail"}
    budget = next(it for it in items if it.item == "budget")
    assert "predicted 53.2 MB" in budget.message  # the brief's figure for this configuration
    learned = next(it for it in items if it.item == "learned")
    assert "+0.000" in learned.message and "modern" in learned.message and "folio" in learned.message


def test_the_shipped_milton_adapter_is_the_ceiling_not_an_answer(base_losses):
    items = statuses(capstone.check(data_dir() / "adapters" / "milton", base_losses))
    assert items == {"loads": "pass", "original": "fail", "budget": "fail", "learned": "pass", "baseline": "pass"}


def test_the_folio_adapter_does_not_count_as_learning_milton(base_losses):
    items = capstone.check(data_dir() / "adapters" / "folio", base_losses)
    learned = next(it for it in items if it.item == "learned")
    assert learned.status == "fail" and "+0.054" in learned.message  # the threshold's reason, in the brief


def test_an_adapter_without_its_training_shape_gets_todo_not_a_guess(tmp_path, base_losses):
    save_adapter(prepare("lora", targets=["q_proj"], r=2, alpha=4.0), tmp_path / "a")
    budget = next(it for it in capstone.check(tmp_path / "a", base_losses) if it.item == "budget")
    assert budget.status == "todo" and "batch_size" in budget.message


def test_a_broken_folder_fails_to_load_and_nothing_else_is_guessed(tmp_path, base_losses):
    shutil.copytree(data_dir() / "adapters" / "folio", tmp_path / "a")
    config = tmp_path / "a" / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "r": 3}))
    items = capstone.check(tmp_path / "a", base_losses)
    assert statuses(items) == {"loads": "fail", "original": "error", "budget": "error", "learned": "error",
                               "baseline": "error"}


def test_the_command_line_says_what_to_do_without_a_folder(tmp_path, capsys):
    assert capstone.main([str(tmp_path / "missing")]) == 2
    assert "CAPSTONE.md" in capsys.readouterr().err
