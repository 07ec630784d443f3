"""Execute the master notebooks top to bottom in a fresh kernel and store their outputs.

    python scripts/execute_notebooks.py               # every notebooks/solutions/NN_*.ipynb
    python scripts/execute_notebooks.py 00 03         # only those whose name starts with 00 or 03

Prints each notebook's wall time (this is also how the ⏱ run times in the notebooks are measured).
Then run `python scripts/build_notebooks.py` to regenerate the student versions.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str]) -> None:
    paths = sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    if argv:
        paths = [p for p in paths if any(p.name.startswith(a) for a in argv)]
    total = 0.0
    for path in paths:
        seconds = execute(path)
        total += seconds
        print(f"{path.name:45s} {seconds:6.1f} s")
    print(f"{'total':45s} {total:6.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
