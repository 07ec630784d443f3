"""The GPT, the corpora and the tokenizer, the training loop and checkpoint files."""
import gzip

import pytest
import torch

from lora_scratch import data
from lora_scratch.gpt import GPT, GPTConfig
from lora_scratch.train import TrainConfig, load_checkpoint, lr_at, save_checkpoint, train


def test_gpt2_small_has_exactly_124_439_808_parameters():
    with torch.device("meta"):  # shapes only: no 500 MB allocation
        model = GPT(GPTConfig.gpt2_small())
    assert sum(p.numel() for p in model.parameters()) == 124_439_808
    assert model.lm_head.weight is model.tok_emb.weight


def test_gpt_shapes_and_causality():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    x = torch.randint(0, 50, (2, 10))
    logits, loss = model(x, x)
    assert logits.shape == (2, 10, 50) and loss.ndim == 0
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % 50  # change the future: the past's logits must not move
    assert torch.equal(model(y)[0][:, :6], logits[:, :6])
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_generate_is_reproducible_with_a_generator():
    model = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=8))
    start = torch.zeros(1, 1, dtype=torch.long)
    a = model.generate(start, 20, generator=torch.Generator().manual_seed(0))
    b = model.generate(start, 20, generator=torch.Generator().manual_seed(0))
    assert a.shape == (1, 21) and torch.equal(a, b)


@pytest.mark.parametrize("corpus", data.CORPORA)
def test_every_corpus_round_trips_through_the_tokenizer(corpus):
    for split in data.SPLITS:
        text = data.load_text(corpus, split)
        ids = data.encode(text)
        assert int(ids.max()) < data.VOCAB_SIZE and data.decode(ids) == text


def test_decode_never_fails_on_a_cut_character():
    ids = data.encode("æ")
    assert len(ids) == 2 and data.decode(ids[:1]) == "\ufffd"


def test_validation_plays_are_held_out_in_both_spellings():
    import json

    manifest = json.loads((data.data_dir() / "text" / "manifest.json").read_text())
    files = manifest["files"]
    for spelling in ("modern", "folio"):
        assert not set(files[f"{spelling}_train.txt.gz"]["sources"]) & set(files[f"{spelling}_val.txt.gz"]["sources"])
    assert len(files["modern_val.txt.gz"]["sources"]) == len(files["folio_val.txt.gz"]["sources"]) == 3
    val_opening = data.load_text("modern", "val")[:2000]
    assert val_opening not in data.load_text("modern", "train")


def test_layout_is_shared_so_the_fine_tune_learns_spelling():
    for spelling in ("modern", "folio"):
        text = data.load_text(spelling, "val")
        assert "\n[" not in text and "\n\n\n" not in text and "\n " not in text  # no stage directions
        assert "Actus" not in text and "SCENE" not in text


def test_folio_metric_ignores_speaker_tags_and_separates_the_spellings():
    assert data.dialogue_words("Ophe.\nI haue seene\n\nHam.\nvpon") == ["i", "haue", "seene", "vpon"]
    folio = data.folio_share(data.load_text("folio", "val"))
    modern = data.folio_share(data.load_text("modern", "val"))
    assert folio > 0.10 and modern < 0.01


def test_missing_corpus_says_how_to_rebuild(monkeypatch, tmp_path):
    monkeypatch.setenv("LORA_SCRATCH_DATA", str(tmp_path))
    data.load_text.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="python scripts/build_data.py"):
            data.load_text("folio", "train")
    finally:
        data.load_text.cache_clear()


def test_corpora_are_gzip_with_no_timestamp():
    for path in (data.data_dir() / "text").glob("*.gz"):
        head = path.read_bytes()[:10]
        assert head[4:8] == b"\0\0\0\0", f"{path.name} stores an mtime; rebuilds would differ"
        gzip.decompress(path.read_bytes())


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) < 0.11 and lr_at(50, cfg) < lr_at(20, cfg)


def test_train_lowers_loss_and_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=32, n_layer=1, n_head=2, n_embd=32))
    toks = data.load_tokens("modern", "val")[:20000]
    cfg = TrainConfig(steps=60, batch_size=8, block_size=32, lr=3e-3, warmup=5, eval_every=0, eval_windows=8)
    hist = train(model, toks, cfg, {"val": toks}, progress=False)
    assert hist["val"]["val"][-1] < 3.5  # from ln(256) = 5.55 at the start
    save_checkpoint(model, tmp_path / "m.safetensors")
    again = load_checkpoint(tmp_path / "m.safetensors")
    x = toks[:32].view(1, -1)
    assert torch.equal(again(x)[0], model(x)[0]) and again.lm_head.weight is again.tok_emb.weight


def test_train_takes_an_optimizer_and_scales_each_group_lr():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=16, n_layer=1, n_head=1, n_embd=8))
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": params[:1], "lr_scale": 16.0}, {"params": params[1:]}], lr=1.0)
    cfg = TrainConfig(steps=3, batch_size=2, block_size=16, lr=1e-3, warmup=1, eval_every=0, eval_windows=2)
    train(model, data.load_tokens("modern", "val")[:5000], cfg, progress=False, optimizer=opt)
    last = lr_at(cfg.steps - 1, cfg)  # the schedule's lr at the last step, times each group's lr_scale
    assert opt.param_groups[0]["lr"] == pytest.approx(16 * last) and opt.param_groups[1]["lr"] == pytest.approx(last)


def test_missing_checkpoint_says_how_to_rebuild(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m lora_scratch.train pretrain"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_checkpoint_holding_a_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.safetensors"
    torch.save({"x": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="refused"):
        load_checkpoint(path)


def test_targets_may_be_a_non_contiguous_slice():
    """model(idx[:, :-1], idx[:, 1:]) with a batch above 1: the targets are a strided view."""
    from lora_scratch.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=8))
    idx = torch.randint(0, 32, (3, 9), generator=torch.Generator().manual_seed(0))
    assert not idx[:, 1:].is_contiguous()
    _, loss = model(idx[:, :-1], idx[:, 1:])
    _, same = model(idx[:, :-1].contiguous(), idx[:, 1:].contiguous())
    assert torch.equal(loss, same)
