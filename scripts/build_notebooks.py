"""Build the student notebooks from the master notebooks in notebooks/solutions/.

    python scripts/build_notebooks.py                  # (re)write notebooks/NN_name.ipynb
    python scripts/build_notebooks.py --check          # exit 1 if any student notebook is stale
    python scripts/build_notebooks.py --release DIR    # the student release (scripts/release.py)

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
import re
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


CHECK_CALL = re.compile(r"checks\.check_(\w+)\(")
NBGRADER_POINTS = 1  # per exercise; an instructor may change them in nbgrader's formgrader


def nbgrader_metadata(master: NotebookNode) -> list[dict | None]:
    """nbgrader's cell metadata (schema 3) for each cell of a master: an exercise cell (solution markers) is an
    answer cell, `<name>_answer`; the check cell after it (checks.check_<name>) is a locked autograder test worth
    NBGRADER_POINTS, `<name>_check`; every other cell gets none. With LORA_SCRATCH_CHECKS=strict in the
    environment, a check that fails raises, which is how nbgrader scores a test cell."""
    result: list[dict | None] = [None] * len(master.cells)
    pending: list[int] = []
    for index, cell in enumerate(master.cells):
        if cell.cell_type != "code":
            continue
        if BEGIN in cell.source:
            pending.append(index)
        names = CHECK_CALL.findall(cell.source)
        if names:
            name = names[0]
            result[index] = {"grade": True, "grade_id": f"{name}_check", "locked": True, "points": NBGRADER_POINTS,
                             "schema_version": 3, "solution": False, "task": False}
            for answer in pending:
                suffix = "" if len(pending) == 1 else f"_{pending.index(answer) + 1}"
                result[answer] = {"grade": False, "grade_id": f"{name}_answer{suffix}", "locked": False,
                                  "schema_version": 3, "solution": True, "task": False}
            pending = []
    for answer in pending:  # solution markers with no check after them
        result[answer] = {"grade": False, "grade_id": f"answer_cell_{answer}", "locked": False,
                          "schema_version": 3, "solution": True, "task": False}
    return result


def with_nbgrader(master: NotebookNode) -> NotebookNode:
    """A copy of the master whose cells carry exactly the nbgrader metadata of nbgrader_metadata."""
    nb = copy.deepcopy(master)
    for cell, meta in zip(nb.cells, nbgrader_metadata(master)):
        if meta is None:
            cell.metadata.pop("nbgrader", None)
        else:
            cell.metadata["nbgrader"] = meta
    return nb


def make_student(master: NotebookNode, name: str = "notebook") -> NotebookNode:
    """Return the student version of a master notebook (the master is not modified)."""
    student = copy.deepcopy(master)
    student.nbformat_minor = max(int(student.get("nbformat_minor", 5)), 5)
    cells = []
    for index, cell in enumerate(student.cells):
        cell.setdefault("id", f"cell-{index:03d}")  # deterministic id if the master has none
        if _is_dropped(cell):
            continue
        cell.metadata.pop("nbgrader", None)  # nbgrader's markings belong to the masters (nbgrader_metadata)
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
    changes = []
    for path, text in stale_masters(root):
        path.write_text(text, encoding="utf-8", newline="\n")
        changes.append(f"wrote   notebooks/solutions/{path.name} (nbgrader metadata)")
    expected = expected_students(root)
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
    problems += [f"nbgrader notebooks/solutions/{path.name} (its nbgrader metadata is out of date)"
                 for path, _ in stale_masters(root)]
    return problems


def stale_masters(root: Path) -> list[tuple[Path, str]]:
    """(master, its text with up-to-date nbgrader metadata) for every master whose metadata differs."""
    out = []
    for path in masters(root):
        master = nbformat.read(path, as_version=4)
        text = render(with_nbgrader(master))
        if path.read_text(encoding="utf-8") != text:
            out.append((path, text))
    return out


def verify_release(dest: Path) -> None:
    """Fail if any file in the release holds a solution marker or a solutions folder exists."""
    leaks = [p for p in dest.rglob("*") if p.is_file() and BEGIN.encode() in p.read_bytes()]
    folders = [p for p in dest.rglob("solutions") if p.is_dir()]
    if leaks or folders:
        names = ", ".join(str(p.relative_to(dest)) for p in leaks + folders)
        raise SystemExit(f"release {dest} leaks solutions: {names}")


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
        elif args.release:  # scripts/release.py builds it (and tests it with --execute)
            sys.path.insert(0, str(REPO))
            from scripts import release

            return release.main([str(args.release), "--root", str(args.root)])
        else:
            print("\n".join(build(args.root)) or "Student notebooks already up to date.")
    except SolutionMarkerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
