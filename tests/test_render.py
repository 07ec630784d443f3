"""scripts/render_course.py: offline reveal.js decks and the readable HTML build (one notebook each, fast).

tests/test_slides_browser.py checks in Chromium that every slide of every deck fits 1280×720."""

from __future__ import annotations

import importlib.util
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parent.parent
MASTER = REPO / "notebooks" / "solutions" / "01_rank_and_svd.ipynb"
MARK = "Tell the room: this sentence is for the instructor only"
NOTE = "Speaker note: pause here and ask who has met the SVD before"
SOLUTION_LINE = "return d * r + r * k"  # inside notebook 01's first BEGIN/END SOLUTION block
VERDICT = "factored_params: correct"  # what notebook 01's first check printed for the master's solution
EMOJI = "🟢🔵⏱✅❌⏳"
NETWORK = re.compile(r"^(https?:)?//")


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


render, builder = load("render_course"), load("build_notebooks")


class Page(HTMLParser):
    """What a page loads, its text, and the first heading of each top-level reveal.js slide."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.loads, self.styles, self.words, self.slide_titles = [], [], [], []
        self.depth, self.in_style, self.heading = 0, False, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe") and attrs.get("src"):
            self.loads.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.loads.append(attrs["href"])
        self.in_style = tag == "style"
        if tag == "section":
            self.depth += 1
            if self.depth == 1:
                self.slide_titles.append(None)
        if tag in ("h1", "h2") and self.depth >= 1 and self.slide_titles[-1] is None:
            self.heading = ""

    def handle_endtag(self, tag):
        self.depth -= tag == "section"
        if tag in ("h1", "h2") and self.heading is not None:
            self.slide_titles[-1], self.heading = self.heading.replace("¶", "").strip(), None

    def handle_data(self, data):
        self.words.append(data)
        if self.in_style:
            self.styles.append(data)
        if self.heading is not None:
            self.heading += data

    def network(self) -> list[str]:
        css_urls = re.findall(r"""(?:url\(|@import)\s*["']?([^"')\s]+)""", "\n".join(self.styles))
        return [ref for ref in self.loads + css_urls if NETWORK.match(ref)]

    def text(self) -> str:
        return "".join(self.words)


def words(text: str) -> str:
    """Text without the marks (a deck draws them as pictures) and with single spaces."""
    return " ".join("".join(char for char in text if char not in EMOJI).split())


def headings(nb) -> list[str]:
    return [words(c.source.lstrip().splitlines()[0][3:]) for c in nb.cells
            if c.cell_type == "markdown" and c.source.lstrip().startswith("## ")]


def pngs(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.fixture(scope="module")
def decks(tmp_path_factory) -> dict[str, Path]:
    """Notebook 01's two decks, built from a master that carries two more cells: one tagged `instructor`, one
    tagged `notes`."""
    root = tmp_path_factory.mktemp("course")
    master = nbformat.read(MASTER, as_version=4)
    master.cells.insert(3, new_markdown_cell(MARK, metadata={"tags": ["instructor"]}))
    master.cells.insert(2, new_markdown_cell(NOTE, metadata={"tags": ["notes"]}))
    (root / "solutions").mkdir()
    nbformat.write(master, root / "solutions" / MASTER.name)
    render.build_slides(root / "out", ["01"], folder=root / "solutions")
    return {deck: root / "out" / deck / f"{MASTER.stem}.slides.html" for deck in ("student", "instructor")}


@pytest.mark.parametrize("deck", ["student", "instructor"])
def test_deck_loads_only_files_shipped_beside_it(decks, deck):
    page = Page(decks[deck].read_text(encoding="utf-8"))
    assert page.network() == [], "a deck must work offline: no CDN for scripts or styles"
    local = [ref for ref in page.loads if not ref.startswith("data:")]
    assert any("reveal.js/dist/reveal.js" in ref for ref in local) and any("katex" in ref for ref in local)
    missing = [ref for ref in local if not (decks[deck].parent / ref).is_file()]
    assert missing == [], f"the deck refers to files that were not copied beside it: {missing}"


def test_student_deck_has_no_instructor_cell_and_no_solution(decks):
    student = Page(decks["student"].read_text(encoding="utf-8")).text()
    instructor = Page(decks["instructor"].read_text(encoding="utf-8")).text()
    assert MARK in instructor and SOLUTION_LINE in instructor
    assert MARK not in student and SOLUTION_LINE not in student
    assert "NotImplementedError" in student  # the exercise is there, as a stub
    assert VERDICT in instructor and VERDICT not in student, "a checker's verdict would give the answer away"


def test_student_deck_keeps_the_figures_and_outputs_of_ordinary_cells(decks):
    """Built from the master: every figure of notebook 01 (none comes from an exercise or a check cell)."""
    nb = nbformat.read(MASTER, as_version=4)
    student = Page(decks["student"].read_text(encoding="utf-8"))
    assert sum(ref.startswith("data:image/png;base64,") for ref in student.loads) == pngs(nb) > 0
    printed = next(o.text for c in nb.cells if c.cell_type == "code" and not render.is_check(c) for o in c.outputs
                   if o.output_type == "stream")
    assert printed.strip().splitlines()[0] in student.text()


def test_student_version_is_the_student_notebook_with_outputs():
    """Same cells and the same stubbed code as scripts/build_notebooks.py makes; outputs only where harmless."""
    master = nbformat.read(MASTER, as_version=4)
    student, notebook = render.for_student(master), builder.make_student(master)
    assert [c.source for c in student.cells] == [c.source for c in notebook.cells]
    assert not [c for c in student.cells if builder.BEGIN in c.source or builder.END in c.source]
    emptied = [c for c in student.cells if c.cell_type == "code" and "NotImplementedError" in c.source
               or render.is_check(c)]
    assert emptied and all(c.outputs == [] for c in emptied)


def test_instructor_deck_shows_solutions_without_the_markers(decks):
    text = Page(decks["instructor"].read_text(encoding="utf-8")).text()
    assert SOLUTION_LINE in text and "# TASK:" in text  # the task line says what the solution does
    assert builder.BEGIN not in text and builder.END not in text


def test_notes_cells_are_speaker_notes_for_the_instructor_only(decks):
    instructor = decks["instructor"].read_text(encoding="utf-8")
    notes = re.findall(r'<aside class="notes">(.*?)</aside>', instructor, re.S)
    assert len(notes) == 1 and NOTE in notes[0], "the `notes` cell becomes reveal.js speaker notes"
    assert NOTE not in decks["student"].read_text(encoding="utf-8")


def test_notes_attach_to_the_slide_they_follow():
    nb = new_notebook(cells=[new_markdown_cell("# 99 · T"), new_markdown_cell("Some text"),
                             new_markdown_cell(NOTE, metadata={"tags": ["notes"]}), new_markdown_cell("More")])
    instructor = render.for_slides(nb, "instructor")
    assert [c.metadata.slideshow.slide_type for c in instructor.cells] == ["slide", "subslide", "notes", "subslide"]
    assert NOTE not in [c.source for c in render.for_slides(nb, "student").cells]


@pytest.mark.parametrize("deck", ["student", "instructor"])
def test_marks_are_drawn_without_an_emoji_font(decks, deck):
    text = decks[deck].read_text(encoding="utf-8")
    assert not [char for char in EMOJI if char in text], "no raw emoji: a machine may have no font for them"
    assert 'aria-label="core"' in text and 'aria-label="time"' in text


def test_marks_in_tags_and_scripts_become_references():
    page = render.with_marks('<title>✅ ok</title><p title="🟢">🟢 core ⏱️</p><script>var a = "❌";</script>')
    assert not [char for char in EMOJI if char in page]
    assert "<title>&#x2705; ok</title>" in page and 'title="&#x1F7E2;"' in page and '"\\u274c"' in page
    assert page.count("<svg") == 2 and "\ufe0f" not in page


def test_deck_has_one_slide_per_section(decks):
    nb = nbformat.read(MASTER, as_version=4)
    title = nb.cells[0].source.splitlines()[0][2:].strip()
    slides = Page(decks["student"].read_text(encoding="utf-8")).slide_titles
    assert [words(slide) for slide in slides] == [title] + headings(nb)


def test_student_deck_drops_instructor_cells_even_if_a_notebook_still_has_them():
    nb = new_notebook(cells=[new_markdown_cell("# 99 · T"), new_markdown_cell(MARK, metadata={"tags": ["instructor"]}),
                             new_code_cell("x = 1"), new_code_cell("assert x == 1")])
    student, instructor = render.for_slides(nb, "student"), render.for_slides(nb, "instructor")
    assert [c.source for c in student.cells] == ["# 99 · T", "x = 1", "assert x == 1"]
    assert [c.metadata.slideshow.slide_type for c in instructor.cells] == ["slide", "subslide", "-", "skip"]
    assert "slideshow" not in nb.cells[0].metadata  # the notebook itself is not touched


def test_instructor_tags_are_the_ones_the_student_builder_drops():
    assert render.INSTRUCTOR_TAGS == builder.DROP_TAGS


def test_a_tall_sub_slide_continues_on_the_next_and_a_tall_cell_is_cut():
    prose = "\n\n".join(f"Paragraph {n}: " + "words " * 60 for n in range(12))  # about 12 × 3 lines of text
    code = "\n".join(f"x{n} = {n}" for n in range(20))
    output = {"output_type": "stream", "name": "stdout", "text": "\n".join(f"line {n}" for n in range(30))}
    nb = new_notebook(cells=[new_markdown_cell("# 99 · T"), new_markdown_cell("## 1 · Long\n\n" + prose),
                             new_code_cell(code, outputs=[nbformat.from_dict(output)]), new_code_cell("y = 1")])
    cells = render.for_slides(nb, "instructor").cells
    kinds = [c.metadata.slideshow.slide_type for c in cells]
    assert kinds[:2] == ["slide", "slide"] and "subslide" in kinds[2:]
    pieces = [c.source for c in cells if c.cell_type == "markdown"][1:]
    assert len(pieces) > 1 and "\n\n".join(pieces) == nb.cells[1].source, "cut between paragraphs, nothing lost"
    shown = next(c for c in cells if c.cell_type == "code" and c.source == code)
    printed = next(c for c in cells if c.get("outputs"))
    assert shown.outputs == [] and printed.metadata.transient.remove_source, "first the code, then its output"
    starts = [i for i, kind in enumerate(kinds) if kind in ("slide", "subslide")] + [len(cells)]
    for start, end in zip(starts, starts[1:]):
        height = sum(render.cell_height(c) for c in cells[start:end])
        assert height <= render.BUDGET or end - start == 1, f"sub-slide {start}..{end} is {height:.0f} px"


def test_html_page_embeds_its_figures_and_the_index_lists_title_time_and_goals(tmp_path):
    (page_path,) = render.build_html(tmp_path, ["01"])
    page = Page(page_path.read_text(encoding="utf-8"))
    nb = nbformat.read(MASTER, as_version=4)
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert pngs > 0 and sum(ref.startswith("data:image/png;base64,") for ref in page.loads) == pngs
    assert page.network() == []
    index = Page((tmp_path / "index.html").read_text(encoding="utf-8")).text()
    head = nb.cells[0].source.splitlines()
    time_line = next(line for line in head if line.startswith("⏱")).replace("**Time:**", "").replace("⏱", "").strip()
    assert head[0][2:].strip() in index and time_line in index
    goal = next(line for line in head if line.startswith("- ")).split("**")[0][2:].strip()
    assert goal and goal in index, "the goals of the header cell are listed"
    assert SOLUTION_LINE in page.text() and not [char for char in EMOJI if char in page_path.read_text()]


def test_student_html_book_has_outputs_but_no_solutions(tmp_path):
    (page_path,) = render.build_html(tmp_path, ["01"], deck="student")
    page = Page(page_path.read_text(encoding="utf-8"))
    assert sum(ref.startswith("data:image/png;base64,") for ref in page.loads) == pngs(nbformat.read(MASTER, 4))
    assert SOLUTION_LINE not in page.text() and VERDICT not in page.text() and "NotImplementedError" in page.text()
    assert "exercises left for you" in (tmp_path / "index.html").read_text(encoding="utf-8")
    assert render.main(["html", "01", "--deck", "student", "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / page_path.name).is_file()
