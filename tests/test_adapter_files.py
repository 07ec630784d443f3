"""What save_adapter writes, load_adapter gives back, or refuses: saves are all-or-nothing whenever a crash
strikes, files from two different saves are refused, old format /1 folders are still read, and checkpoints are
written just as carefully."""
import json
import os
import shutil
import tempfile

import pytest
import torch

from lora_scratch.data import data_dir
from lora_scratch.files import atomic_write_json, save_tensors
from lora_scratch.gpt import GPT, GPTConfig
from lora_scratch.lora import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    add_lora,
    base_fingerprint,
    load_adapter,
    lora_layers,
    lora_state_dict,
    read_adapter_config,
    save_adapter,
)
from lora_scratch.train import load_base, load_checkpoint, save_checkpoint
from lora_scratch.variants import use_rslora

PENDING = ADAPTER_CONFIG + ".pending"  # the journal of a save under way
SMALL = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=16)
X = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))


def small_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(SMALL).eval()


def trained(seed: int, alpha: float) -> GPT:
    """A LoRA model whose B moved off zero, as after training."""
    model = add_lora(small_gpt(), ["q_proj", "v_proj"], r=2, alpha=alpha)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.3)
    return model


def reloaded(folder) -> torch.Tensor:
    with torch.no_grad():
        return load_adapter(small_gpt(), folder)(X)[0]


@pytest.fixture
def folder_with_old(tmp_path):
    """A folder holding the 'old' adapter (alpha 4) and a file of the user's; the 'new' adapter has alpha 6, so a
    folder mixing the two would give the logits of neither."""
    old, new = trained(1, 4.0), trained(2, 6.0)
    folder = tmp_path / "ad"
    save_adapter(old, folder, info={"run": "old"})
    (folder / "notes.txt").write_text("mine")
    with torch.no_grad():
        return folder, old(X)[0], new, new(X)[0]


def old_or_new(folder, old_logits, new_logits) -> str:
    """Which complete adapter the folder loads as; fails on anything else (a mix, nothing)."""
    got, info = reloaded(folder), read_adapter_config(folder)["info"]
    which = "old" if torch.equal(got, old_logits) else "new" if torch.equal(got, new_logits) else "a mix"
    assert which != "a mix" and info == {"run": which}, f"loads {which} with info {info}"
    assert (folder / "notes.txt").read_text() == "mine"
    return which


def test_a_crash_at_any_moment_leaves_the_old_adapter_or_the_new_one(folder_with_old, tmp_path, monkeypatch):
    """Copies of the folder taken before and after every rename and flush stand for a crash at that moment."""
    folder, old_logits, new, new_logits = folder_with_old
    states = []

    def snapshot() -> None:
        states.append(tmp_path / f"state{len(states)}")
        shutil.copytree(folder, states[-1])

    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(os, "replace", lambda a, b: (snapshot(), real_replace(a, b), snapshot()))
    monkeypatch.setattr(os, "fsync", lambda fd: (snapshot(), real_fsync(fd)))
    save_adapter(new, folder, info={"run": "new"})
    monkeypatch.undo()
    assert len(states) >= 6
    seen = [old_or_new(state, old_logits, new_logits) for state in states]
    assert seen[0] == "old" and seen[-1] == "new" and old_or_new(folder, old_logits, new_logits) == "new"


@pytest.mark.parametrize("where, k", [("replace", 1), ("replace", 2), ("replace", 3), ("fsync", 1), ("fsync", 2),
                                      ("mkstemp", 1), ("mkstemp", 2), ("interrupt", 2)])
def test_a_failure_inside_or_between_the_writes_loses_nothing(folder_with_old, monkeypatch, where, k):
    folder, old_logits, new, new_logits = folder_with_old
    calls = []
    name = {"interrupt": "replace"}.get(where, where)
    module = tempfile if name == "mkstemp" else os
    real = getattr(module, name)

    def failing(*args, **kwargs):
        calls.append(name)
        if len(calls) == k:
            raise KeyboardInterrupt if where == "interrupt" else OSError(28, "No space left on device (injected)")
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, failing)
    with pytest.raises((OSError, KeyboardInterrupt)):
        save_adapter(new, folder, info={"run": "new"})
    monkeypatch.undo()
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]  # no half-written leftovers
    old_or_new(folder, old_logits, new_logits)
    save_adapter(new, folder, info={"run": "new"})  # and the next save simply works
    assert old_or_new(folder, old_logits, new_logits) == "new" and not (folder / PENDING).exists()


def test_a_save_cut_short_after_its_commit_is_finished_by_the_next_load(folder_with_old, monkeypatch):
    folder, old_logits, new, new_logits = folder_with_old
    real_replace, calls = os.replace, []

    def third_fails(a, b):
        calls.append(b)
        if len(calls) == 3:  # the weights are in place; the journal has not yet become adapter_config.json
            raise OSError("crash (injected)")
        real_replace(a, b)
    monkeypatch.setattr(os, "replace", third_fails)
    with pytest.raises(OSError):
        save_adapter(new, folder, info={"run": "new"})
    monkeypatch.undo()
    recorded_info = lambda: json.loads((folder / ADAPTER_CONFIG).read_text())["info"]  # noqa: E731
    assert (folder / PENDING).exists() and recorded_info() == {"run": "old"}
    assert old_or_new(folder, old_logits, new_logits) == "new"
    assert not (folder / PENDING).exists() and recorded_info() == {"run": "new"}


def folder_bytes(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("info", [{"when": object()}, {"tensor": torch.ones(2)}, {("a", "tuple"): 1}])
def test_info_that_json_cannot_hold_is_refused_before_the_folder_is_touched(folder_with_old, info):
    folder, _, new, _ = folder_with_old
    before = folder_bytes(folder)
    with pytest.raises(ValueError, match="info.*JSON.*nothing was written"):
        save_adapter(new, folder, info=info)
    assert folder_bytes(folder) == before


def test_non_finite_weights_are_refused_before_the_folder_is_touched(folder_with_old):
    folder, _, new, _ = folder_with_old
    before = folder_bytes(folder)
    with torch.no_grad():
        new.blocks[1].attn.v_proj.lora_B[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"blocks\.1\.attn\.v_proj\.lora_B holds 1 NaN.*learning rate"):
        save_adapter(new, folder)
    assert folder_bytes(folder) == before


def test_files_from_two_saves_are_refused_naming_both_sha256s(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    save_adapter(trained(1, 4.0), a)
    save_adapter(trained(2, 6.0), b)
    shutil.copy(b / ADAPTER_WEIGHTS, a / ADAPTER_WEIGHTS)  # what two programs saving at once can leave
    recorded = json.loads((a / ADAPTER_CONFIG).read_text())["weights_sha256"]
    actual = json.loads((b / ADAPTER_CONFIG).read_text())["weights_sha256"]
    with pytest.raises(ValueError, match=f"different saves.*{recorded}.*{actual}.*delete {ADAPTER_CONFIG}"):
        load_adapter(small_gpt(), a)
    (a / ADAPTER_CONFIG).unlink()  # as the message says: the weights file carries its own config
    with torch.no_grad():
        assert torch.equal(reloaded(a), trained(2, 6.0)(X)[0])


def test_an_edited_config_is_refused_but_an_edited_info_is_fine(tmp_path):
    save_adapter(trained(1, 4.0), tmp_path)
    config = json.loads((tmp_path / ADAPTER_CONFIG).read_text())
    (tmp_path / ADAPTER_CONFIG).write_text(json.dumps(config | {"info": {"note": "tried lr 1e-3"}}))
    assert read_adapter_config(tmp_path)["lora_alpha"] == 4.0
    (tmp_path / ADAPTER_CONFIG).write_text(json.dumps(config | {"lora_alpha": 8.0}))
    with pytest.raises(ValueError, match="edited after saving: lora_alpha"):
        load_adapter(small_gpt(), tmp_path)


def test_saving_onto_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("keep me")
    with pytest.raises(ValueError, match="is a file"):
        save_adapter(trained(1, 4.0), tmp_path / "file")
    assert (tmp_path / "file").read_text() == "keep me"


# ---- format /1 folders (written before the weights' sha256 was recorded) ----

def write_v1(folder, model, **config) -> None:
    """A folder as format /1 wrote it: the bare tensors, then a JSON config without the weights' sha256."""
    folder.mkdir()
    save_tensors(folder / ADAPTER_WEIGHTS, lora_state_dict(model))
    atomic_write_json(folder / ADAPTER_CONFIG, {
        "format": "lora_scratch.adapter/1", "adapted_modules": sorted(lora_layers(model)),
        "base_fingerprint": base_fingerprint(model), "info": {}, **model.lora_config, **config})


def test_a_format_1_folder_loads_when_its_files_fit_together(tmp_path):
    model = trained(1, 4.0)
    write_v1(tmp_path / "v1", model)
    with torch.no_grad():
        assert torch.equal(reloaded(tmp_path / "v1"), model(X)[0])
    assert read_adapter_config(tmp_path / "v1")["variant"] == "lora"


def test_a_format_1_rslora_folder_comes_back_with_its_scaling(tmp_path):
    """Format /1 saved use_rslora but load_adapter ignored it: alpha / sqrt(r) came back as alpha / r."""
    model = use_rslora(trained(1, 4.0))
    write_v1(tmp_path / "v1", model)
    with torch.no_grad():
        assert torch.equal(reloaded(tmp_path / "v1"), model(X)[0])


def test_a_format_1_folder_whose_files_do_not_fit_is_refused(tmp_path):
    write_v1(tmp_path / "v1", trained(1, 4.0), r=4)  # the weights are rank 2
    with pytest.raises(ValueError, match="rank 4 adapter needs.*do not belong together"):
        load_adapter(small_gpt(), tmp_path / "v1")
    write_v1(tmp_path / "pissa", trained(1, 4.0), init="pissa")
    with pytest.raises(ValueError, match="PiSSA adapter in the old format"):
        load_adapter(small_gpt(), tmp_path / "pissa")


def test_the_shipped_adapters_are_format_2_and_fit_the_shipped_base():
    base = load_base()
    for name in ("folio", "sonnets", "milton"):
        config = read_adapter_config(data_dir() / "adapters" / name)  # checks the weights' sha256 too
        assert config["format"] == "lora_scratch.adapter/2" and config["variant"] == "lora"
        # c98a46...: the fingerprint format /1 recorded (numpy's bytes); the raw-byte hash must reproduce it
        assert config["base_fingerprint"] == base_fingerprint(base, config["adapted_modules"]) == "c98a46154dee5daa"


# ---- checkpoints: one file, written just as carefully ----

@pytest.mark.parametrize("where", ["replace", "fsync"])
def test_a_failed_checkpoint_save_leaves_the_old_checkpoint(tmp_path, monkeypatch, where):
    path = tmp_path / "m.safetensors"
    old, new = small_gpt(0), small_gpt(1)
    save_checkpoint(old, path, info={"run": "old"})

    def fail(*args):
        raise OSError("crash (injected)")
    monkeypatch.setattr(os, where, fail)
    with pytest.raises(OSError):
        save_checkpoint(new, path, info={"run": "new"})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    with torch.no_grad():
        assert torch.equal(load_checkpoint(path)(X)[0], old(X)[0])


def test_a_checkpoint_is_checked_before_its_file_is_touched(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(small_gpt(0), path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="info.*JSON"):
        save_checkpoint(small_gpt(1), path, info={"when": object()})
    broken = small_gpt(1)
    with torch.no_grad():
        broken.blocks[0].mlp.up_proj.weight[3, 3] = float("inf")
    with pytest.raises(ValueError, match=r"blocks\.0\.mlp\.up_proj\.weight holds 1 NaN or infinite.*learning rate"):
        save_checkpoint(broken, path)
    with pytest.raises(ValueError, match="save_adapter"):
        save_checkpoint(add_lora(small_gpt(1), ["q_proj"]), path)
    assert path.read_bytes() == before


def test_non_finite_files_are_refused_on_load(tmp_path):
    state = {k: v for k, v in small_gpt().state_dict().items() if k != "lm_head.weight"}
    state["ln_f.weight"] = state["ln_f.weight"].clone().fill_(float("nan"))
    save_tensors(tmp_path / "nan.safetensors", state, metadata={"config": json.dumps(SMALL.to_dict())})
    with pytest.raises(ValueError, match="ln_f.weight holds 16 NaN.*refused to load"):
        load_checkpoint(tmp_path / "nan.safetensors")
    model = trained(1, 4.0)
    write_v1(tmp_path / "v1", model)
    tensors = lora_state_dict(model)
    tensors["blocks.0.attn.q_proj.lora_A"] = tensors["blocks.0.attn.q_proj.lora_A"].clone().fill_(float("inf"))
    save_tensors(tmp_path / "v1" / ADAPTER_WEIGHTS, tensors)
    with pytest.raises(ValueError, match=r"q_proj\.lora_A holds 32 NaN or infinite.*refused to load"):
        load_adapter(small_gpt(), tmp_path / "v1")


def test_a_bf16_checkpoint_comes_back_in_bf16(tmp_path):
    model = small_gpt().to(torch.bfloat16)
    save_checkpoint(model, tmp_path / "bf16.safetensors")
    again = load_checkpoint(tmp_path / "bf16.safetensors")
    assert again.tok_emb.weight.dtype == torch.bfloat16
    with torch.no_grad():
        assert torch.equal(again(X)[0], model(X)[0])
