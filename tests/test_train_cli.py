"""python -m lora_scratch.train: bad numbers and bad paths are refused before any training (argparse's exit 2,
one line naming what is allowed), a diverged run saves nothing and exits non-zero, and damaged corpus files
name the file, what is wrong and how to rebuild them."""
import gzip
import json

import pytest
import torch

import lora_scratch.train as train_module
from lora_scratch import data
from lora_scratch.gpt import GPT, GPTConfig
from lora_scratch.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, lora_layers
from lora_scratch.train import main, save_checkpoint

TINY = ["--preset", "custom", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "32",
        "--batch-size", "4", "--steps", "2", "--eval-every", "0"]


@pytest.fixture
def no_training(monkeypatch):
    """Every refusal below must come before training: training at all fails the test."""
    def trained(*args, **kwargs):
        raise AssertionError("training started although an argument was bad")
    monkeypatch.setattr(train_module, "train", trained)


def refused(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("flag, value, allowed", [
    ("--steps", "0", ">= 1"), ("--steps", "-5", ">= 1"), ("--batch-size", "0", ">= 1"), ("--steps", "ten", ">= 1"),
    ("--lr", "0", "> 0"), ("--lr", "nan", "> 0"), ("--eval-every", "-1", ">= 0"), ("--block-size", "0", ">= 1"),
])
@pytest.mark.parametrize("command", ["pretrain", "lora"])
def test_bad_numbers_are_argparse_errors_naming_the_range(capsys, no_training, tmp_path, command, flag, value,
                                                          allowed):
    out = ["--out", str(tmp_path / ("m.safetensors" if command == "pretrain" else "ad"))]
    line = refused(capsys, [command, flag, value] + out)
    assert flag in line and allowed in line and "Traceback" not in line


@pytest.mark.parametrize("out_name, log_name, words", [
    ("m.json", None, "must end in .safetensors"),  # its history JSON would overwrite it
    ("m.safetensors", "m.safetensors", "is the checkpoint --out"),
    ("m.safetensors", "history.txt", "must end in .json"),
    ("folder.safetensors", None, "is a folder"),
    ("afile/m.safetensors", None, "is a file, not a folder"),
])
def test_bad_pretrain_paths_are_refused_before_training(capsys, no_training, tmp_path, out_name, log_name, words):
    (tmp_path / "folder.safetensors").mkdir()
    (tmp_path / "afile").write_text("x")
    argv = ["pretrain", *TINY, "--out", str(tmp_path / out_name)]
    argv += ["--log", str(tmp_path / log_name)] if log_name else []
    assert words in refused(capsys, argv)


def test_a_lora_out_that_is_a_file_is_refused_before_training(capsys, no_training, tmp_path):
    (tmp_path / "ad").write_text("not a folder")
    assert "is a file; an adapter is saved as a folder" in refused(capsys, ["lora", "--out", str(tmp_path / "ad")])


def test_pretrain_writes_the_checkpoint_and_its_history_side_by_side(tmp_path):
    main(["pretrain", *TINY, "--out", str(tmp_path / "m.safetensors"), "--log", str(tmp_path / "log.json")])
    assert train_module.load_checkpoint(tmp_path / "m.safetensors").config.n_embd == 16
    assert json.loads((tmp_path / "m.json").read_text()) == json.loads((tmp_path / "log.json").read_text())


def test_a_diverged_lora_run_saves_nothing_and_exits_non_zero(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    save_checkpoint(GPT(GPTConfig(vocab_size=256, block_size=32, n_layer=1, n_head=2, n_embd=16)),
                    tmp_path / "base.safetensors")
    argv = ["lora", "--base", str(tmp_path / "base.safetensors"), "--corpus", "sonnets", "--r", "2", "--block-size",
            "32", "--batch-size", "4", "--steps", "2", "--eval-every", "0", "--out", str(tmp_path / "ad")]
    main(argv)  # a good run first: the adapter a diverged run must not destroy
    before = {name: (tmp_path / "ad" / name).read_bytes() for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG)}
    real_train = train_module.train

    def diverging(model, *args, **kwargs):
        history = real_train(model, *args, **kwargs)
        with torch.no_grad():
            next(iter(lora_layers(model).values())).lora_B.fill_(float("nan"))  # what lr far too high leaves
        return history
    monkeypatch.setattr(train_module, "train", diverging)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code not in (0, None)
    assert "NaN" in str(exit_info.value.code) and "learning rate" in str(exit_info.value.code)
    assert {name: (tmp_path / "ad" / name).read_bytes() for name in before} == before


# ---- damaged corpus files ----

@pytest.mark.parametrize("damage, words", [
    (lambda good: good[: len(good) // 2], "truncated"),
    (lambda good: b"plain text, never compressed", "not a gzip file"),
    (lambda good: gzip.compress(b"caf\xe9 \xff\xfe", mtime=0), "not UTF-8 text"),
])
def test_a_damaged_corpus_names_the_file_the_damage_and_the_rebuild(monkeypatch, tmp_path, damage, words):
    good = gzip.compress(("To be, or not to be. " * 400).encode(), mtime=0)
    (tmp_path / "text").mkdir()
    path = tmp_path / "text" / "folio_train.txt.gz"
    path.write_bytes(damage(good))
    monkeypatch.setenv("LORA_SCRATCH_DATA", str(tmp_path))
    data.load_text.cache_clear()
    try:
        with pytest.raises(ValueError) as err:
            data.load_text("folio", "train")
    finally:
        data.load_text.cache_clear()
    message = str(err.value)
    assert str(path) in message and words in message and "python scripts/build_data.py" in message
