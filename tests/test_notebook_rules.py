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


def ignores_output(cell) -> bool:
    return "nbval-ignore-output" in cell.get("metadata", {}).get("tags", [])


@pytest.mark.parametrize("path", MASTERS, ids=lambda p: p.stem)
def test_ignored_outputs_are_backed_by_an_assert(path):
    code_cells = [c for c in cells(path) if c["cell_type"] == "code"]
    code = [source(c) for c in code_cells]
    for i, src in enumerate(code):
        if ignores_output(code_cells[i]) and "interact" not in src and "# no claim:" not in src:
            following = "\n".join(code[i:i + 3])
            assert "assert" in following or "timing_claim(" in following, \
                f"cell {i} ignores its output but no assert checks its claim:\n{src[:200]}"


PLUMBING = re.compile(r"#\s*(NBVAL_\w+|noqa\b|type:\s*ignore|pragma\b|fmt:\s*(off|on|skip))", re.IGNORECASE)


@pytest.mark.parametrize("path", MASTERS, ids=lambda p: p.stem)
def test_no_test_or_lint_markers_in_the_code_learners_read(path):
    """nbval reads cell tags (nbval-ignore-output, ...); ruff does not lint notebooks: learners see course code only."""
    for i, cell in enumerate(cells(path)):
        if cell["cell_type"] == "code":
            found = PLUMBING.search(source(cell))
            assert not found, f"cell {i} shows {found.group(0)!r} to learners; use a cell tag instead"


def test_the_marker_rule_catches_what_it_should():
    assert PLUMBING.search("x = f()  # noqa: E731") and PLUMBING.search("# NBVAL_IGNORE_OUTPUT\nprint(1)")
    assert not PLUMBING.search("# no claim: versions differ between machines")


TIMED_ASSERT = re.compile(r"^\s*assert\b.*(\bratio\(|\bspeedup|\bstep_ratio\b|\bwall\b|\belapsed|perf_counter"
                          r"|\bratio\s*[<>]|[<>]\s*ratio\b)", re.MULTILINE)


@pytest.mark.parametrize("path", MASTERS, ids=lambda p: p.stem)
def test_no_wall_clock_asserts(path):
    """nbval runs on busy machines: a notebook asserts operation counts, FLOPs and bytes, and states timing claims
    with bench.timing_claim (printed here, asserted only by make bench)."""
    for i, cell in enumerate(cells(path)):
        if cell["cell_type"] == "code":
            found = TIMED_ASSERT.search(source(cell))
            assert not found, f"cell {i} asserts a time: {found.group(0).strip()!r}; use bench.timing_claim"


def test_the_timing_rule_catches_what_it_should():
    assert TIMED_ASSERT.search('assert ratio(decode, "LoRA merged", "base") < 1.2')
    assert TIMED_ASSERT.search("assert 0.8 < ratio < 1.5") and TIMED_ASSERT.search("assert wall < 300")
    assert not TIMED_ASSERT.search('assert ops["LoRA merged"] == ops["base"]')
