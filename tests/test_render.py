"""scripts/render_course.py: offline reveal.js decks and the readable HTML build (one notebook each, fast)."""

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
SOLUTION_LINE = "return d * r + r * k"  # inside notebook 01's first BEGIN/END SOLUTION block
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


def headings(nb) -> list[str]:
    return [c.source.lstrip().splitlines()[0][3:].strip() for c in nb.cells
            if c.cell_type == "markdown" and c.source.lstrip().startswith("## ")]


@pytest.fixture(scope="module")
def decks(tmp_path_factory) -> dict[str, Path]:
    """Notebook 01's two decks, built from a master that carries one more cell, tagged `instructor`."""
    root = tmp_path_factory.mktemp("course")
    master = nbformat.read(MASTER, as_version=4)
    master.cells.insert(3, new_markdown_cell(MARK, metadata={"tags": ["instructor"]}))
    for folder, nb in (("solutions", master), ("student", builder.make_student(master))):
        (root / folder).mkdir()
        nbformat.write(nb, root / folder / MASTER.name)
    render.build_slides(root / "out", ["01"], decks={"student": root / "student", "instructor": root / "solutions"})
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


def test_deck_has_one_slide_per_section(decks):
    nb = nbformat.read(MASTER, as_version=4)
    title = nb.cells[0].source.splitlines()[0][2:].strip()
    slides = Page(decks["student"].read_text(encoding="utf-8")).slide_titles
    assert slides == [title] + headings(nb)


def test_student_deck_drops_instructor_cells_even_if_a_notebook_still_has_them():
    nb = new_notebook(cells=[new_markdown_cell("# 99 · T"), new_markdown_cell(MARK, metadata={"tags": ["instructor"]}),
                             new_code_cell("x = 1"), new_code_cell("assert x == 1")])
    student, instructor = render.for_slides(nb, "student"), render.for_slides(nb, "instructor")
    assert [c.source for c in student.cells] == ["# 99 · T", "x = 1", "assert x == 1"]
    assert [c.metadata.slideshow.slide_type for c in instructor.cells] == ["slide", "subslide", "-", "skip"]
    assert "slideshow" not in nb.cells[0].metadata  # the notebook itself is not touched


def test_instructor_tags_are_the_ones_the_student_builder_drops():
    assert render.INSTRUCTOR_TAGS == builder.DROP_TAGS


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
