"""Build the student notebooks from the master notebooks in notebooks/solutions/.

    python scripts/build_notebooks.py                  # (re)write notebooks/NN_name.ipynb
    python scripts/build_notebooks.py --check          # exit 1 if any student notebook is stale
    python scripts/build_notebooks.py --release DIR    # student-only course folder, no solutions

Rules for a master notebook (notebooks/solutions/NN_name.ipynb):
- In a code cell, everything from a line containing `### BEGIN SOLUTION` to a line containing
  `### END SOLUTION` (markers included) becomes one `raise NotImplementedError("<task>")` line at
  the indentation of the BEGIN line. The task is the text of the nearest `# TASK: ...` line above
  it in the same cell (that line stays), else a generic "write your code here" message.
- Cells tagged `solution-only` or `instructor` are left out of the student version.
- Student code cells have no outputs and no execution count; cell ids and notebook metadata
  (kernelspec included) are kept. Output is written like `nbformat.write` (indent 1, trailing
  newline), so rebuilding gives byte-identical files.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
from pathlib import Path

import nbformat
from nbformat import NotebookNode

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
TASK_PREFIX = "# TASK:"
DEFAULT_TASK = "Exercise: write your code here, then run the check below"
DROP_TAGS = frozenset({"solution-only", "instructor"})
REBUILD_HINT = "python scripts/build_notebooks.py (or make notebooks)"
RELEASE_FILES = ("README.md", "pyproject.toml", "environment.yml")
# The course's Makefile needs tests/ and scripts/, which a student release leaves out: ship `make lab` only.
RELEASE_MAKEFILE = """# Student release: `make lab` sets up .venv (first time only) and opens JupyterLab.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
LAB_FLAGS = $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab
setup: $(STAMP)

$(STAMP): pyproject.toml
\ttest -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
\t$(BIN)/python -m pip install --quiet --upgrade pip
\t$(BIN)/python -m pip install --quiet -e ".[dev]"
\ttouch $(STAMP)

lab: setup
\t$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/00_start_here.ipynb
"""
RELEASE_NOTE = """# Student release

This folder is the student edition of "LoRA from Scratch". It contains the exercise notebooks
with the solutions removed (each exercise raises `NotImplementedError` until you fill it in),
the `lora_scratch` package and the data. It contains no solutions.
"""


class SolutionMarkerError(ValueError):
    """A master notebook has unbalanced or nested solution markers."""


def _raise_line(marker_line: str, task: str | None) -> str:
    indent = marker_line[: len(marker_line) - len(marker_line.lstrip())]
    message = json.dumps(task or DEFAULT_TASK, ensure_ascii=False)
    return f"{indent}raise NotImplementedError({message})"


def stub_source(source: str, where: str = "cell") -> str:
    """Replace each BEGIN/END SOLUTION region of `source` by a `raise NotImplementedError` line."""
    out: list[str] = []
    task: str | None = None
    inside = False
    for number, line in enumerate(source.split("\n"), start=1):
        if BEGIN in line:
            if inside:
                raise SolutionMarkerError(f"{where}, line {number}: nested '{BEGIN}'")
            inside = True
            out.append(_raise_line(line, task))
        elif END in line:
            if not inside:
                raise SolutionMarkerError(f"{where}, line {number}: '{END}' without '{BEGIN}'")
            inside = False
        elif not inside:
            out.append(line)
            if line.strip().startswith(TASK_PREFIX):
                task = line.strip()[len(TASK_PREFIX) :].strip() or None
    if inside:
        raise SolutionMarkerError(f"{where}: '{BEGIN}' without '{END}'")
    return "\n".join(out)


def _is_dropped(cell: NotebookNode) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    return bool(DROP_TAGS.intersection(tags if isinstance(tags, list) else []))


def make_student(master: NotebookNode, name: str = "notebook") -> NotebookNode:
    """Return the student version of a master notebook (the master is not modified)."""
    student = copy.deepcopy(master)
    student.nbformat_minor = max(int(student.get("nbformat_minor", 5)), 5)
    cells = []
    for index, cell in enumerate(student.cells):
        cell.setdefault("id", f"cell-{index:03d}")  # deterministic id if the master has none
        if _is_dropped(cell):
            continue
        if cell.cell_type == "code":
            cell.source = stub_source(cell.source, f"{name}: cell {index} (code)")
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    student.cells = cells
    return student


def render(nb: NotebookNode) -> str:
    """Serialise like `nbformat.write`: sorted keys, indent 1, trailing newline."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def masters(root: Path) -> list[Path]:
    return sorted((root / "notebooks" / "solutions").glob(NOTEBOOK_GLOB))


def expected_students(root: Path) -> dict[str, str]:
    """File name -> text of every student notebook the masters under `root` produce."""
    result = {}
    for path in masters(root):
        master = nbformat.read(path, as_version=4)
        result[path.name] = render(make_student(master, f"{path.parent.name}/{path.name}"))
    return result


def _orphans(root: Path, expected: dict[str, str]) -> list[Path]:
    found = (root / "notebooks").glob(NOTEBOOK_GLOB)
    return sorted(p for p in found if p.name not in expected)


def build(root: Path) -> list[str]:
    """Write all student notebooks, delete orphans; return a line per change."""
    expected = expected_students(root)
    changes = []
    for name, text in expected.items():
        target = root / "notebooks" / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8", newline="\n")
            changes.append(f"wrote   notebooks/{name}")
    for orphan in _orphans(root, expected):
        orphan.unlink()
        changes.append(f"deleted notebooks/{orphan.name} (its master is gone)")
    return changes


def check(root: Path) -> list[str]:
    """Return a problem line for every missing, stale or orphaned student notebook."""
    expected = expected_students(root)
    problems = []
    for name, text in expected.items():
        target = root / "notebooks" / name
        if not target.exists():
            problems.append(f"missing notebooks/{name}")
        elif target.read_text(encoding="utf-8") != text:
            problems.append(f"stale   notebooks/{name}")
    for orphan in _orphans(root, expected):
        problems.append(f"orphan  notebooks/{orphan.name} (no master in notebooks/solutions/)")
    return problems


def _prepare_release_dir(dest: Path, root: Path) -> None:
    dest, root = dest.resolve(), root.resolve()
    if dest == root or dest in root.parents:
        raise SystemExit(f"refusing to build a release into {dest}: it contains the repository")
    if dest.exists() and any(dest.iterdir()):
        if not (dest / "RELEASE_NOTE.md").exists():
            raise SystemExit(f"refusing to overwrite {dest}: not empty and not an earlier release")
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)


def _copy_tree_parts(root: Path, dest: Path) -> None:
    package = root / "lora_scratch"
    for source in sorted(package.rglob("*.py")) if package.is_dir() else []:
        target = dest / source.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    if (root / "data").is_dir():
        shutil.copytree(root / "data", dest / "data")
    for name in RELEASE_FILES:
        if (root / name).is_file():
            shutil.copy2(root / name, dest / name)
    (dest / "Makefile").write_text(RELEASE_MAKEFILE, encoding="utf-8", newline="\n")


def verify_release(dest: Path) -> None:
    """Fail if any file in the release holds a solution marker or a solutions folder exists."""
    leaks = [p for p in dest.rglob("*") if p.is_file() and BEGIN.encode() in p.read_bytes()]
    folders = [p for p in dest.rglob("solutions") if p.is_dir()]
    if leaks or folders:
        names = ", ".join(str(p.relative_to(dest)) for p in leaks + folders)
        raise SystemExit(f"release {dest} leaks solutions: {names}")


def release(root: Path, dest: Path) -> None:
    """Build a student-only copy of the course in `dest`."""
    expected = expected_students(root)
    _prepare_release_dir(dest, root)
    (dest / "notebooks").mkdir()
    for name, text in expected.items():
        (dest / "notebooks" / name).write_text(text, encoding="utf-8", newline="\n")
    _copy_tree_parts(root, dest)
    (dest / "RELEASE_NOTE.md").write_text(RELEASE_NOTE, encoding="utf-8", newline="\n")
    verify_release(dest)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    mode.add_argument("--release", type=Path, metavar="DIR", help="build a student-only folder")
    parser.add_argument("--root", type=Path, default=REPO, help="repository root (default: this repo)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.check:
            problems = check(args.root)
            if problems:
                print("Student notebooks are out of date with notebooks/solutions/:", file=sys.stderr)
                print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
                print(f"Run: {REBUILD_HINT}", file=sys.stderr)
                return 1
            print(f"OK: {len(masters(args.root))} student notebooks are up to date.")
        elif args.release:
            release(args.root, args.release)
            print(f"Release written to {args.release} ({len(masters(args.root))} notebooks, no solutions).")
        else:
            print("\n".join(build(args.root)) or "Student notebooks already up to date.")
    except SolutionMarkerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
