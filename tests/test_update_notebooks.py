"""scripts/update_notebooks.py: a new edition mid-course keeps every answer and every cell a learner added."""
import importlib.util
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NB = "03_parameter_count.ipynb"
spec = importlib.util.spec_from_file_location("update_notebooks", ROOT / "scripts" / "update_notebooks.py")
up = importlib.util.module_from_spec(spec)
spec.loader.exec_module(up)


def _cell(nb, start):
    return next(c for c in nb.cells if c.source.startswith(start))


def test_answers_and_own_cells_survive_a_new_edition_and_the_old_one_is_backed_up(tmp_path):
    course, new = tmp_path / "mine", tmp_path / "new"
    (course / "notebooks").mkdir(parents=True)
    (new / "notebooks").mkdir(parents=True)
    mine = nbformat.read(ROOT / "notebooks" / NB, as_version=4)
    answer = "def linear_params(d_in, d_out, bias=True):\n    # TASK: x\n    return d_in * d_out + d_out * bias\n"
    _cell(mine, "def linear_params").source = answer
    at = mine.cells.index(_cell(mine, "def lora_params"))
    mine.cells.insert(at, nbformat.v4.new_markdown_cell("my note: A is r x d_in"))
    nbformat.write(mine, course / "notebooks" / NB)
    before = (course / "notebooks" / NB).read_bytes()

    edition = nbformat.read(ROOT / "notebooks" / NB, as_version=4)
    fixed = next(c for c in edition.cells if c.cell_type == "markdown" and "Exercise" in c.source)
    fixed.source += "\n\n(fixed in the new edition)"
    lora_stub = _cell(edition, "def lora_params")
    lora_stub.source = lora_stub.source.replace("# TASK:", "# TASK: (reworded)")
    nbformat.write(edition, new / "notebooks" / NB)
    nbformat.write(nbformat.read(ROOT / "notebooks" / "00_start_here.ipynb", as_version=4),
                   new / "notebooks" / "00_start_here.ipynb")

    report = up.update(course, new)
    merged = nbformat.read(course / "notebooks" / NB, as_version=4)
    assert _cell(merged, "def linear_params").source == answer  # my answer
    assert any("(fixed in the new edition)" in c.source for c in merged.cells)  # the instructor's fix
    note = next(i for i, c in enumerate(merged.cells) if c.source == "my note: A is r x d_in")
    assert merged.cells[note + 1].source.startswith("def lora_params")  # my cell, where I put it
    assert (course / "notebooks" / "00_start_here.ipynb").exists()  # a notebook I did not have yet
    assert any("task changed" in line for line in report) and any("1 cell" in line for line in report)
    (backup,) = (course / "notebooks" / "backup").iterdir()
    assert (backup / NB).read_bytes() == before  # nothing lost
    again = up.update(course, new)
    assert nbformat.read(course / "notebooks" / NB, as_version=4) == merged  # a second run changes nothing
    assert not any("updated" in line and "00_" in line for line in again)
