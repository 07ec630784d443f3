"""Zip your work to hand in: `make submit NAME="Ada Lovelace"` (or python scripts/submit.py --name "Ada Lovelace").

The zip, submission-<name>.zip in the course folder, holds:
- every course notebook, notebooks/NN_name.ipynb, as saved (save in JupyterLab first: Ctrl+S);
- the capstone, if there is one: the adapter folder (milton_adapter/, or --adapter PATH), capstone.ipynb, REPORT.md;
- manifest.json: your name, the time, and the size and sha256 of every file, so your instructor can check that
  nothing was damaged on the way.
Nothing in the course folder is changed; an earlier zip of the same name is replaced, and the script says so.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = "notebooks/[0-9][0-9]_*.ipynb"
CAPSTONE_FILES = ("capstone.ipynb", "REPORT.md")
MAX_ADAPTER_BYTES = 50_000_000  # a LoRA adapter of this course is well under 1 MB; 50 MB means a wrong folder


def slug(name: str) -> str:
    """'Ada Lovelace' -> 'ada-lovelace': letters, digits and dashes only, for a file name that works everywhere."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def collect(root: Path, adapter: str) -> list[tuple[Path, str]]:
    """(file on disk, name in the zip) for everything that is handed in."""
    files = [(p, p.relative_to(root).as_posix()) for p in sorted(root.glob(NOTEBOOKS))]
    files += [(root / n, n) for n in CAPSTONE_FILES if (root / n).is_file()]
    folder = (root / adapter) if adapter else None
    if folder is not None and folder.is_dir():
        inside = [p for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
        size = sum(p.stat().st_size for p in inside)
        if size > MAX_ADAPTER_BYTES:
            raise SystemExit(f"{folder} holds {size / 1e6:.0f} MB: a LoRA adapter here is well under 1 MB. Pass the "
                             "folder written by save_adapter (adapter_model.safetensors + adapter_config.json) with "
                             "--adapter PATH, or ADAPTER=PATH with make.")
        files += [(p, f"milton_adapter/{p.relative_to(folder).as_posix()}") for p in inside]
    return files


def write_zip(root: Path, name: str, adapter: str = "milton_adapter") -> Path:
    if not slug(name):
        raise SystemExit('say who you are: make submit NAME="Your Name" (or python scripts/submit.py --name "Your '
                         'Name"); the name goes into the file name and the manifest.')
    files = collect(root, adapter)
    if not any(arc.startswith("notebooks/") for _, arc in files):
        raise SystemExit(f"no course notebook found under {root / 'notebooks'}: run this in the course folder")
    manifest = {"name": name, "submitted_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "files": {arc: {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                          for p, arc in files}}
    out = root / f"submission-{slug(name)}.zip"
    with tempfile.NamedTemporaryFile(dir=root, prefix=".submission-", suffix=".zip", delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for p, arc in files:
                z.write(p, arc)
            z.writestr("manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        replaced = out.exists()
        mask = os.umask(0)
        os.umask(mask)
        partial.chmod(0o666 & ~mask)  # a temporary file is private (0600); the zip is an ordinary file
        partial.replace(out)  # all or nothing: an interrupted run leaves the earlier zip as it was
    finally:
        partial.unlink(missing_ok=True)
    notebooks = sum(arc.startswith("notebooks/") for _, arc in files)
    extra = sorted({arc.split("/")[0] for _, arc in files if not arc.startswith("notebooks/")})
    print(f"{'replaced' if replaced else 'wrote'} {out.name}: {notebooks} notebooks"
          + (f", {', '.join(extra)}" if extra else ", no capstone files") + f" ({out.stat().st_size / 1e3:.0f} kB)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="", help="your name, as your instructor knows it")
    p.add_argument("--adapter", default="milton_adapter", help="your capstone adapter folder (default milton_adapter)")
    p.add_argument("--root", type=Path, default=ROOT, help="the course folder (default: the one this script is in)")
    args = p.parse_args(argv)
    write_zip(args.root, args.name, args.adapter)
    return 0


if __name__ == "__main__":
    sys.exit(main())
