"""Render the course for reading without Jupyter: reveal.js slide decks and a static HTML book.

    python scripts/render_course.py slides [NN ...]   # build/slides/{student,instructor}/NN_name.slides.html
    python scripts/render_course.py html [NN ...]     # build/html/NN_name.html and build/html/index.html

Both work offline: the pages load reveal.js and KaTeX (for the $…$ math) from the copies in vendor/, which
are copied next to them; no CDN, no RequireJS, no MathJax. A live widget needs a kernel, so its cell shows
nothing here; the notebooks keep a static picture of the same thing beside each one.

Slides. The student deck is made from the student notebook (notebooks/NN_*.ipynb: exercises stubbed, no
outputs), the instructor deck from the master (notebooks/solutions/NN_*.ipynb: solutions and outputs).
Instructor-only cells are the cells tagged `instructor` or `solution-only` (the tags that
scripts/build_notebooks.py drops); they never reach a student deck. Slide breaks are set here, on a copy:
- the title cell and each `## ` section heading start a new slide (left to right);
- every other markdown cell starts a sub-slide (downwards) within its section;
- code cells stay on the sub-slide of the text above them; cells that only `assert` are left out (they are
  the notebook's self-test, not teaching). A cell whose author set `slideshow.slide_type` keeps it.
"""

from __future__ import annotations

import argparse
import ast
import copy
import html
import shutil
import sys
from pathlib import Path

import jinja2
import nbformat
from nbconvert import HTMLExporter, SlidesExporter
from nbconvert.filters import markdown2html
from nbformat import NotebookNode

REPO = Path(__file__).resolve().parent.parent
VENDOR = REPO / "vendor"
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
INSTRUCTOR_TAGS = frozenset({"instructor", "solution-only"})  # = build_notebooks.DROP_TAGS
DECKS = {"student": REPO / "notebooks", "instructor": REPO / "notebooks" / "solutions"}

KATEX_HEAD = r"""
<link rel="stylesheet" href="{{ resources.katex_url }}/katex.min.css">
<script src="{{ resources.katex_url }}/katex.min.js"></script>
<script src="{{ resources.katex_url }}/contrib/auto-render.min.js"></script>
<script>
document.addEventListener("DOMContentLoaded", function () {
  renderMathInElement(document.body, {throwOnError: false, delimiters: [
    {left: "$$", right: "$$", display: true}, {left: "\\[", right: "\\]", display: true},
    {left: "$", right: "$", display: false}, {left: "\\(", right: "\\)", display: false}]});
});
</script>
"""
OFFLINE_BLOCKS = """
{%- block html_head_js -%}{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}""" + KATEX_HEAD + "{%- endblock html_head_js_mathjax -%}\n"
SLIDES_TEMPLATE = "{%- extends 'index.html.j2' -%}" + OFFLINE_BLOCKS + """
{% block footer_js %}
<style>
.reveal .slides > section, .reveal .slides > section > section { height: 100%; overflow-y: auto; }
.reveal h1, .reveal h2, .reveal h3 { text-transform: none; }
</style>
<script src="{{ resources.reveal.url_prefix }}/dist/reveal.js"></script>
<script src="{{ resources.reveal.url_prefix }}/plugin/notes/notes.js"></script>
<script>
Reveal.initialize({controls: true, progress: true, hash: true, center: false, slideNumber: "c/t",
                   transition: "none", width: 1280, height: 800, plugins: [RevealNotes]});
</script>
{% endblock footer_js %}
"""
PAGE_TEMPLATE = "{%- extends 'index.html.j2' -%}" + OFFLINE_BLOCKS + """
{%- block body_header -%}
{{ super() }}
<nav class="course-nav" style="font-family: var(--jp-ui-font-family); font-size: 15px; margin: 1em 2em;">
{{ resources.course_nav }}</nav>
{%- endblock body_header -%}
"""
PAGE_STYLE = """<style>
body { max-width: 1100px; margin: 2em auto; padding: 0 1em; font-family: sans-serif; line-height: 1.45; }
li.notebook { margin-bottom: 1.4em; } .time { color: #555; } nav.course-nav { margin: 1em 0; }
</style>"""


# ---------------------------------------------------------------- which cells, which slides


def is_instructor_only(cell: NotebookNode) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    return bool(INSTRUCTOR_TAGS.intersection(tags if isinstance(tags, list) else []))


def is_assert_only(source: str) -> bool:
    """True for a code cell made only of `assert` statements (the notebook checking its own prose)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    return bool(body) and all(isinstance(statement, ast.Assert) for statement in body)


def slide_type(cell: NotebookNode, index: int) -> str:
    """reveal.js role of a cell: 'slide' (new section), 'subslide', '-' (same slide) or 'skip'."""
    text = cell.source.lstrip()
    if cell.cell_type == "markdown":
        return "slide" if index == 0 or text.startswith(("# ", "## ")) else "subslide"
    if cell.cell_type == "code" and is_assert_only(cell.source):
        return "skip"
    return "-"


def for_slides(nb: NotebookNode, deck: str) -> NotebookNode:
    """A copy of `nb` with slide breaks set; a student deck loses instructor-only cells."""
    nb = copy.deepcopy(nb)
    if deck == "student":
        nb.cells = [cell for cell in nb.cells if not is_instructor_only(cell)]
    for index, cell in enumerate(nb.cells):
        show = cell.metadata.setdefault("slideshow", NotebookNode())
        show.setdefault("slide_type", slide_type(cell, index))
    return nb


# ---------------------------------------------------------------- exporters


def exporter(kind: str) -> HTMLExporter:
    """A slides or page exporter whose pages load nothing from the network."""
    if kind == "slides":
        loader = jinja2.DictLoader({"offline_slides.j2": SLIDES_TEMPLATE})
        return SlidesExporter(extra_loaders=[loader], template_file="offline_slides.j2", reveal_theme="white",
                              reveal_url_prefix="../reveal.js", exclude_input_prompt=True, exclude_output_prompt=True)
    loader = jinja2.DictLoader({"offline_page.j2": PAGE_TEMPLATE})
    return HTMLExporter(extra_loaders=[loader], template_file="offline_page.j2", embed_images=True)


def copy_vendor(dest: Path, names: tuple[str, ...]) -> None:
    for name in names:
        if not (VENDOR / name).is_dir():
            raise SystemExit(f"vendor/{name} is missing: it ships with the repository (see vendor/README.md)")
        shutil.copytree(VENDOR / name, dest / name, dirs_exist_ok=True)


def select(folder: Path, numbers: list[str]) -> list[Path]:
    """The notebooks NN_*.ipynb of `folder`, all of them or those whose number is in `numbers`."""
    paths = sorted(folder.glob(NOTEBOOK_GLOB))
    chosen = [p for p in paths if not numbers or p.name[:2] in {n.zfill(2) for n in numbers}]
    if not chosen:
        known = ", ".join(p.name[:2] for p in paths)
        raise SystemExit(f"no notebook numbered {' '.join(numbers)} in {folder} (there are: {known})")
    return chosen


def build_slides(out: Path, numbers: list[str] | None = None, decks: dict[str, Path] | None = None) -> list[Path]:
    """Write a student and an instructor deck per notebook under `out`; return the decks written."""
    slides, written = exporter("slides"), []
    copy_vendor(out, ("reveal.js", "katex"))
    for deck, folder in (decks or DECKS).items():
        (out / deck).mkdir(parents=True, exist_ok=True)
        for path in select(folder, numbers or []):
            nb = for_slides(nbformat.read(path, as_version=4), deck)
            resources = {"katex_url": "../katex", "metadata": {"name": path.stem}}
            body, _ = slides.from_notebook_node(nb, resources=resources)
            target = out / deck / f"{path.stem}.slides.html"
            target.write_text(body, encoding="utf-8")
            written.append(target)
    return written


# ---------------------------------------------------------------- the readable book


def header(nb: NotebookNode) -> dict[str, str]:
    """Title, time line and goals (as HTML) from a notebook's first cell (docs/AUTHORING.md's header)."""
    lines = nb.cells[0].source.splitlines()
    title = next((line[2:].strip() for line in lines if line.startswith("# ")), "untitled")
    time = next((line for line in lines if line.startswith("⏱")), "")
    time = time.replace("⏱", "").replace("**Time:**", "").strip()
    goals, inside = [], False
    for line in lines:
        if line.startswith("**Goals"):
            inside = True
        elif inside and line.startswith("**"):
            break
        if inside:
            goals.append(line)
    return {"title": title, "time": time, "goals": markdown2html("\n".join(goals)) if goals else ""}


def navigation(paths: list[Path], index: int) -> str:
    links = ['<a href="index.html">Contents</a>']
    if index > 0:
        links.insert(0, f'<a href="{paths[index - 1].stem}.html">← {paths[index - 1].stem}</a>')
    if index + 1 < len(paths):
        links.append(f'<a href="{paths[index + 1].stem}.html">{paths[index + 1].stem} →</a>')
    return " · ".join(links)


def index_page(entries: list[tuple[Path, dict[str, str]]]) -> str:
    items = "\n".join(
        f'<li class="notebook"><h2><a href="{path.stem}.html">{html.escape(head["title"])}</a></h2>\n'
        f'<p class="time">⏱ {html.escape(head["time"])}</p>\n{head["goals"]}</li>' for path, head in entries)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>LoRA from Scratch</title>\n'
            f"{PAGE_STYLE}\n</head>\n<body>\n<h1>LoRA from Scratch — the course, with solutions and outputs</h1>\n"
            f"<p>Read in order. Each page is a notebook of <code>notebooks/solutions/</code> as executed; to run "
            f"the code and do the exercises, open the notebooks in JupyterLab (<code>make lab</code>).</p>\n"
            f"<ol>\n{items}\n</ol>\n</body>\n</html>\n")


def build_html(out: Path, numbers: list[str] | None = None, folder: Path = DECKS["instructor"]) -> list[Path]:
    """Render the solution notebooks to pages under `out`, with an index.html; return the pages written."""
    page, written, entries = exporter("html"), [], []
    paths = select(folder, numbers or [])
    out.mkdir(parents=True, exist_ok=True)
    copy_vendor(out, ("katex",))
    for index, path in enumerate(paths):
        nb = nbformat.read(path, as_version=4)
        resources = {"katex_url": "katex", "course_nav": navigation(paths, index), "metadata": {"name": path.stem}}
        body, _ = page.from_notebook_node(nb, resources=resources)
        (out / f"{path.stem}.html").write_text(body, encoding="utf-8")
        written.append(out / f"{path.stem}.html")
        entries.append((path, header(nb)))
    (out / "index.html").write_text(index_page(entries), encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("slides", "html"), help="slide decks or the readable HTML book")
    parser.add_argument("numbers", nargs="*", metavar="NN", help="only these notebooks (default: all)")
    parser.add_argument("--out", type=Path, help="output folder (default: build/slides or build/html)")
    args = parser.parse_args(argv)
    out = args.out or REPO / "build" / args.what
    written = build_slides(out, args.numbers) if args.what == "slides" else build_html(out, args.numbers)
    first = out / ("index.html" if args.what == "html" else written[0].relative_to(out))
    print(f"wrote {len(written)} {'decks' if args.what == 'slides' else 'pages'} under {out}; open {first}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
