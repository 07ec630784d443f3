"""Take a new edition of the course notebooks without losing your answers.

    python scripts/update_notebooks.py NEW_FOLDER        # NEW_FOLDER: the new student release (or its notebooks/)

When your instructor fixes a notebook mid-course, you get a new student release. This puts its notebooks into
your notebooks/ folder and carries your work over, cell by cell (cells are matched by their id, which the course
never changes):
- every exercise cell (the ones with a `# TASK:` line) keeps *your* code and its outputs;
- every cell you added yourself (notes, experiments) is kept, after the cell it followed;
- every other cell comes from the new edition (that is where the fixes are).
Before a notebook is changed, your version is copied to notebooks/backup/<time>/, so nothing you wrote is lost.
If an exercise's task changed in the new edition, your answer is kept and the script tells you to compare it with
the new task. Notebooks that are identical in both editions are left alone.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
TASK = "# TASK:"


def _task(cell) -> str | None:
    lines = [ln.strip() for ln in cell.source.splitlines() if ln.strip().startswith(TASK)]
    return lines[0] if cell.cell_type == "code" and lines else None


def merge(mine: nbformat.NotebookNode, new: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[str]]:
    """The new edition with my exercise answers and my own cells carried over; and what the learner should know."""
    new_ids = {c.get("id") for c in new.cells}
    by_id = {c.get("id"): c for c in mine.cells}
    notes, cells = [], []
    mine_after: dict[str | None, list] = {}  # my own cells, by the id of the cell they followed
    previous = None
    for cell in mine.cells:
        if cell.get("id") in new_ids:
            previous = cell.get("id")
        else:
            mine_after.setdefault(previous, []).append(cell)
    cells += mine_after.get(None, [])
    for cell in new.cells:
        old = by_id.get(cell.get("id"))
        if old is not None and _task(cell) is not None:
            if _task(old) != _task(cell):
                notes.append(f"the task changed: {_task(cell)[len(TASK):].strip()!r} — your answer is kept; compare")
            cells.append(old)
        else:
            cells.append(cell)
        cells += mine_after.get(cell.get("id"), [])
    merged = nbformat.from_dict(new)
    merged.cells = cells
    kept = sum(1 for c in new.cells if c.get("id") in by_id and _task(c) is not None)
    own = sum(len(v) for v in mine_after.values())
    notes.insert(0, f"{kept} exercise answer{'s' if kept != 1 else ''} and {own} cell{'s' if own != 1 else ''} of "
                    "your own kept")
    return merged, notes


def update(course: Path, new_folder: Path) -> list[str]:
    new_dir = new_folder / "notebooks" if (new_folder / "notebooks").is_dir() else new_folder
    new_files = sorted(new_dir.glob("[0-9][0-9]_*.ipynb"))
    if not new_files:
        raise SystemExit(f"no course notebooks (NN_name.ipynb) in {new_dir}: pass the new release's folder")
    mine_dir = course / "notebooks"
    if new_dir.resolve() == mine_dir.resolve():
        raise SystemExit("the new edition must be another folder than your own notebooks/")
    backup = mine_dir / "backup" / time.strftime("%Y%m%d-%H%M%S")
    report = []
    for path in new_files:
        target = mine_dir / path.name
        new = nbformat.read(path, as_version=4)
        if not target.exists():
            shutil.copyfile(path, target)
            report.append(f"{path.name}: new notebook")
            continue
        if target.read_bytes() == path.read_bytes():
            continue
        mine = nbformat.read(target, as_version=4)
        merged, notes = merge(mine, new)
        backup.mkdir(parents=True, exist_ok=True)
        shutil.copy2(target, backup / path.name)
        tmp = target.with_suffix(".ipynb.updating")
        nbformat.write(merged, tmp)
        tmp.replace(target)  # all or nothing
        report.append(f"{path.name}: updated; {'; '.join(notes)}")
    if backup.exists():
        report.append(f"your previous versions are in {backup.relative_to(course)}")
    return report or ["every notebook is already the new edition"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("new", type=Path, help="the new student release (or its notebooks/ folder)")
    p.add_argument("--course", type=Path, default=ROOT, help="your course folder (default: this one)")
    args = p.parse_args(argv)
    print("\n".join(update(args.course, args.new)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
