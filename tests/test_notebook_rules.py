"""House rules every master notebook keeps (docs/AUTHORING.md), checked so they cannot drift."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MASTERS = sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


@pytest.mark.parametrize("path", MASTERS, ids=lambda p: p.stem)
def test_header_has_time_goals_and_prerequisites(path):
    head = source(cells(path)[0])
    assert re.match(rf"# {path.name[:2]} · ", head), "the first cell starts with '# NN · Title'"
    for word in ("⏱", "**Goals", "**Prerequisites"):
        assert word in head, f"the first cell lacks {word}"


@pytest.mark.parametrize("path", MASTERS, ids=lambda p: p.stem)
def test_sections_are_marked_core_or_optional(path):
    headings = [c for c in cells(path) if c["cell_type"] == "markdown" and source(c).startswith("## ")]
    for cell in headings:
        if source(cell).startswith(("## Recap", "## Further")):
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        text = source(cell).splitlines()[0]
        assert tags & {"core", "optional"}, f"{text!r} has no core/optional tag"
        assert ("🟢 core" in text) == ("core" in tags) and ("🔵 optional" in text) == ("optional" in tags), text


@pytest.mark.parametrize("path", MASTERS, ids=lambda p: p.stem)
def test_executed_top_to_bottom_in_one_kernel(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    counts = [c["execution_count"] for c in nb["cells"] if c["cell_type"] == "code" and source(c).strip()]
    assert counts == list(range(1, len(counts) + 1)), "re-run with scripts/execute_notebooks.py"


@pytest.mark.parametrize("path", MASTERS, ids=lambda p: p.stem)
def test_every_exercise_is_followed_by_its_check(path):
    code = [source(c) for c in cells(path) if c["cell_type"] == "code"]
    for i, src in enumerate(code):
        if "### BEGIN SOLUTION" in src:
            name = re.search(r"def (\w+)\(", src).group(1)
            assert i + 1 < len(code) and f"checks.check_{name}({name})" in code[i + 1], \
                f"exercise {name} needs `{name} = checks.check_{name}({name})` in the next code cell"


@pytest.mark.parametrize("path", MASTERS, ids=lambda p: p.stem)
def test_ignored_outputs_are_backed_by_an_assert(path):
    code = [source(c) for c in cells(path) if c["cell_type"] == "code"]
    for i, src in enumerate(code):
        if src.startswith("# NBVAL_IGNORE_OUTPUT") and "interact" not in src and "# no claim:" not in src:
            following = "\n".join(code[i:i + 3])
            assert "assert" in following, f"cell {i} ignores its output but no assert checks its claim:\n{src[:200]}"
