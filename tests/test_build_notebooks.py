"""Tests for scripts/build_notebooks.py (student notebooks generated from the masters)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "build_notebooks.py"


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bn = _load_builder()

SOLVED = '''def scale(x, alpha):
    """Multiply x by alpha."""
    # TASK: return x times alpha
    ### BEGIN SOLUTION
    y = x * alpha
    return y
    ### END SOLUTION
'''


def make_master() -> nbformat.NotebookNode:
    nb = new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    solved = new_code_cell(SOLVED, execution_count=3, outputs=[new_output("stream", text="hi\n")])
    nb.cells = [
        new_markdown_cell("# Scaling"),
        solved,
        new_code_cell("print('answer key')", metadata={"tags": ["solution-only"]}),
        new_code_cell("grade()", metadata={"tags": ["instructor"]}),
        new_code_cell("### BEGIN SOLUTION\nz = 1\n### END SOLUTION\nprint(z)", execution_count=4),
    ]
    return nb


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A tiny repository root: one master notebook, a package file, data, a README."""
    (tmp_path / "notebooks" / "solutions").mkdir(parents=True)
    nbformat.write(make_master(), tmp_path / "notebooks" / "solutions" / "01_scale.ipynb")
    (tmp_path / "lora_scratch").mkdir()
    (tmp_path / "lora_scratch" / "__init__.py").write_text("X = 1\n")
    (tmp_path / "data" / "text").mkdir(parents=True)
    (tmp_path / "data" / "text" / "tiny.txt").write_text("to be or not\n")
    (tmp_path / "README.md").write_text("# Course\n")
    return tmp_path


def test_stub_uses_task_text_at_marker_indentation() -> None:
    stub = bn.stub_source(SOLVED)
    assert "### BEGIN SOLUTION" not in stub and "x * alpha" not in stub
    assert "    # TASK: return x times alpha\n" in stub
    assert '    raise NotImplementedError("return x times alpha")\n' in stub


def test_stub_without_task_uses_default_message() -> None:
    stub = bn.stub_source("a = 1\n  ### BEGIN SOLUTION\nb = 2\n### END SOLUTION\nc = 3")
    assert stub == f'a = 1\n  raise NotImplementedError("{bn.DEFAULT_TASK}")\nc = 3'


def test_stub_compiles_and_raises() -> None:
    namespace: dict = {}
    exec(compile(bn.stub_source(SOLVED), "<stub>", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="return x times alpha"):
        namespace["scale"](2, 3)


def test_task_text_with_quotes_is_escaped() -> None:
    stub = bn.stub_source('# TASK: say "hi"\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n')
    with pytest.raises(NotImplementedError, match='say "hi"'):
        exec(compile(stub, "<stub>", "exec"), {})


@pytest.mark.parametrize(
    "source",
    [
        "### BEGIN SOLUTION\nx = 1\n",
        "x = 1\n### END SOLUTION\n",
        "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n",
    ],
    ids=["missing-end", "end-without-begin", "nested"],
)
def test_unbalanced_markers_are_errors(source: str) -> None:
    with pytest.raises(bn.SolutionMarkerError, match="01_x.ipynb: cell 7"):
        bn.stub_source(source, "01_x.ipynb: cell 7")


def test_missing_end_in_notebook_names_notebook_and_cell(course: Path, capsys) -> None:
    master = make_master()
    master.cells[1].source = SOLVED.replace("    ### END SOLUTION\n", "")
    nbformat.write(master, course / "notebooks" / "solutions" / "02_broken.ipynb")
    assert bn.main(["--root", str(course)]) == 2
    assert "02_broken.ipynb: cell 1 (code)" in capsys.readouterr().err


def test_student_notebook_drops_tagged_cells_and_clears_outputs() -> None:
    master = make_master()
    student = bn.make_student(master, "01_scale.ipynb")
    assert [c.id for c in student.cells] == [master.cells[i].id for i in (0, 1, 4)]
    assert "answer key" not in bn.render(student) and "grade()" not in bn.render(student)
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert student.metadata.kernelspec.name == "python3"
    assert master.cells[1].outputs, "the master notebook must not be modified"


def test_build_is_byte_identical_and_check_passes(course: Path) -> None:
    assert bn.main(["--root", str(course)]) == 0
    student = course / "notebooks" / "01_scale.ipynb"
    first = student.read_bytes()
    assert first.endswith(b"}\n") and b'\n "cells": [\n  {\n' in first  # nbformat.write style
    assert bn.main(["--root", str(course)]) == 0
    assert student.read_bytes() == first
    assert bn.main(["--root", str(course), "--check"]) == 0


def test_check_reports_stale_missing_and_orphaned(course: Path, capsys) -> None:
    assert bn.main(["--root", str(course), "--check"]) == 1
    assert "missing notebooks/01_scale.ipynb" in capsys.readouterr().err
    bn.main(["--root", str(course)])
    student = course / "notebooks" / "01_scale.ipynb"
    student.write_text(student.read_text().replace("Scaling", "Scaling!"))
    (course / "notebooks" / "99_old.ipynb").write_text("{}")
    assert bn.main(["--root", str(course), "--check"]) == 1
    err = capsys.readouterr().err
    assert "stale   notebooks/01_scale.ipynb" in err and "99_old.ipynb" in err
    assert "python scripts/build_notebooks.py" in err
    bn.main(["--root", str(course)])
    assert not (course / "notebooks" / "99_old.ipynb").exists()
    assert bn.main(["--root", str(course), "--check"]) == 0


def test_release_has_no_solutions(course: Path, tmp_path: Path) -> None:
    dest = tmp_path / "release"
    assert bn.main(["--root", str(course), "--release", str(dest)]) == 0
    assert (dest / "notebooks" / "01_scale.ipynb").is_file()
    assert (dest / "lora_scratch" / "__init__.py").is_file()
    assert (dest / "data" / "text" / "tiny.txt").is_file()
    assert (dest / "README.md").is_file() and (dest / "RELEASE_NOTE.md").is_file()
    assert not [p for p in dest.rglob("solutions")]
    for path in dest.rglob("*"):
        assert not path.is_file() or b"### BEGIN SOLUTION" not in path.read_bytes(), path
    assert bn.main(["--root", str(course), "--release", str(dest)]) == 0  # rebuilding is fine


def test_release_refuses_foreign_nonempty_dir(course: Path, tmp_path: Path) -> None:
    dest = tmp_path / "precious"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="refusing"):
        bn.main(["--root", str(course), "--release", str(dest)])
    assert (dest / "keep.txt").exists()


def test_verify_release_catches_a_leak(tmp_path: Path) -> None:
    (tmp_path / "notes.py").write_text("### BEGIN SOLUTION\n")
    with pytest.raises(SystemExit, match="notes.py"):
        bn.verify_release(tmp_path)


def test_repository_student_notebooks_are_fresh() -> None:
    if not bn.masters(REPO):
        pytest.skip("notebooks/solutions/ has no master notebooks yet")
    problems = bn.check(REPO)
    assert not problems, "\n".join(problems) + f"\nRun: {bn.REBUILD_HINT}"
