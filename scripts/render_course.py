"""Render the course for reading without Jupyter: reveal.js slide decks and a static HTML book.

    python scripts/render_course.py slides [NN ...]               # build/slides/{student,instructor}/NN_*.slides.html
    python scripts/render_course.py html [NN ...]                 # build/html/: solutions and outputs, and an index
    python scripts/render_course.py html --deck student [NN ...]  # build/html/student/: what a learner may see

All of it works offline: the pages load reveal.js and KaTeX (for the $…$ math) from the copies in vendor/, which
are copied next to them; no CDN, no RequireJS, no MathJax. A live widget needs a kernel, so its cell shows
nothing here; the notebooks keep a static picture of the same thing beside each one.

Two versions, both made from the masters (notebooks/solutions/NN_*.ipynb), so that the figures and printed results
of the ordinary cells are there in both:
- student (student decks, `html --deck student`): the cells tagged `instructor` or `solution-only` (the tags that
  scripts/build_notebooks.py drops) and those tagged `notes` are left out; each exercise is stubbed exactly as in
  the student notebooks (build_notebooks.stub_source: the `### BEGIN SOLUTION`…`### END SOLUTION` block becomes
  `raise NotImplementedError("<task>")`), and the outputs of the exercise cells and of the cells that call
  `checks.check_…` are removed, because a checker's verdict or a solution's output would give the answer away.
- instructor (instructor decks, `html`): every cell with its stored outputs. In the decks the solution-marker lines
  are taken out of the code (the `# TASK:` line stays: it says what the solution below it does); the HTML book
  shows the masters as they are.

Cell tags an author may set, besides those above:
- `notes`: teaching notes for the slide the cell follows. In the instructor deck the cell becomes reveal.js speaker
  notes of that slide (press S for the speaker view); student decks and the student book leave it out; the
  instructor book shows it as an ordinary cell.

Slides are 1280×720 and every slide is meant to fit without scrolling. Slide breaks are set here, on a copy:
- the title cell and each `## ` section heading start a new slide (left to right);
- every other markdown cell starts a sub-slide (downwards) within its section;
- code cells stay on the sub-slide of the text above them; cells that only `assert` are left out (they are the
  notebook's self-test, not teaching). A cell whose author set `slideshow.slide_type` keeps it;
- then a cell that would make its sub-slide taller than the slide starts a new sub-slide. Heights are estimated
  from the source (lines of text and code at the deck's font sizes, wrapped at its width; figures at their size,
  at most IMAGE_MAX_H tall); a markdown cell taller than a slide is first cut between paragraphs or list items,
  and a code cell between its code and its outputs. Code and output lines wrap instead of being cut on the right.
  Only a single piece still too tall (a very long code cell) is shrunk when shown, never below FIT_MIN_ZOOM.
  tests/test_slides_browser.py checks all of this on every slide in Chromium.

The marks 🟢 🔵 ⏱ ✅ ❌ ⏳ of the notebooks are drawn as small inline SVG pictures (MARKS), so that no emoji font is
needed to see them.
"""

from __future__ import annotations

import argparse
import ast
import base64
import copy
import html
import json
import math
import re
import shutil
import struct
import sys
from pathlib import Path

import jinja2
import nbformat
from nbconvert import HTMLExporter, SlidesExporter
from nbconvert.filters import markdown2html
from nbformat import NotebookNode

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from scripts import build_notebooks as bn  # noqa: E402  (the student rules live there; used, not copied)

VENDOR = REPO / "vendor"
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
MASTERS = REPO / "notebooks" / "solutions"
DECKS = ("student", "instructor")
INSTRUCTOR_TAGS = bn.DROP_TAGS  # `instructor`, `solution-only`
NOTES_TAG = "notes"

# ---------------------------------------------------------------- slide geometry (slide px, before reveal scales)
# The CSS below and the height estimate both use these numbers.
SLIDE_W, SLIDE_H = 1280, 720
PAD_X, PAD_Y = 24, 14  # padding of a slide
CONTENT_W = SLIDE_W - 2 * PAD_X
TEXT_PX, TEXT_LINE = 20, 28  # prose: font size and line height
TEXT_CHAR = 10.4  # mean advance of a character of prose at 20 px (DejaVu Sans, the widest usual fallback)
WRAP_LOSS = 70  # px a wrapped line leaves empty on average (the word that did not fit)
TABLE_PX, TABLE_LINE = 18, 24  # markdown tables
CODE_PX, CODE_LINE = 14, 18.5  # code and text outputs
CODE_CHAR = 8.43  # DejaVu Sans Mono at 14 px (0.602 em)
CODE_PAD = 6  # padding of a code box, top and bottom (8 px left and right)
CELL_GAP = 8  # padding of a cell, top plus bottom
IMAGE_MAX_H = 420  # figures are scaled down to at most this height (and the width of the slide)
BUDGET = 0.93 * (SLIDE_H - 2 * PAD_Y)  # an estimate can be a little short: fill 93 % of the slide
FIT_MIN_ZOOM = 0.7  # the last resort never shrinks a slide's content more than this

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
SLIDE_CSS = f"""
:root {{ --jp-code-font-size: {CODE_PX}px; --jp-code-line-height: {CODE_LINE / CODE_PX:.4f};
        --jp-content-font-size1: {TEXT_PX}px; --jp-ui-font-size1: 18px; }}
.reveal .slides > section, .reveal .slides > section > section {{
  height: 100%; box-sizing: border-box; padding: {PAD_Y}px {PAD_X}px; overflow-y: auto; }}
.reveal .slides > section.stack {{ padding: 0; overflow: visible; }}
.reveal h1, .reveal h2, .reveal h3 {{ text-transform: none; }}
.reveal .jp-Cell {{ padding: {CELL_GAP // 2}px 0; }}
.reveal .jp-RenderedHTMLCommon {{ font-size: {TEXT_PX}px; line-height: {TEXT_LINE}px; padding: 0; }}
.reveal .jp-RenderedHTMLCommon p, .reveal .jp-RenderedHTMLCommon ul, .reveal .jp-RenderedHTMLCommon ol,
.reveal .jp-RenderedHTMLCommon table, .reveal .jp-RenderedHTMLCommon details {{ margin: 0 0 10px;
  line-height: {TEXT_LINE}px; }}
.reveal .jp-RenderedHTMLCommon li {{ margin: 0; line-height: {TEXT_LINE}px; }}
.reveal .jp-RenderedHTMLCommon li > ul, .reveal .jp-RenderedHTMLCommon li > ol {{ margin: 0; }}
.reveal .jp-RenderedHTMLCommon h1 {{ font-size: 40px; line-height: 46px; margin: 0 0 14px; }}
.reveal .jp-RenderedHTMLCommon h2 {{ font-size: 32px; line-height: 37px; margin: 0 0 12px; }}
.reveal .jp-RenderedHTMLCommon h3 {{ font-size: 24px; line-height: 29px; margin: 4px 0 8px; }}
.reveal .jp-RenderedHTMLCommon blockquote {{ width: auto; margin: 0 0 10px; padding: 4px 14px; font-style: normal;
  box-shadow: none; background: #f6f8fa; border-left: 4px solid #c8ccd0; }}
.reveal .jp-RenderedHTMLCommon blockquote p {{ display: block; margin: 0 0 6px; }}
.reveal .jp-RenderedHTMLCommon table {{ font-size: 18px; line-height: {TABLE_LINE}px; }}
.reveal .jp-RenderedHTMLCommon td, .reveal .jp-RenderedHTMLCommon th {{ padding: 4px 8px; }}
.reveal .jp-RenderedHTMLCommon .katex-display {{ margin: 6px 0; }}
.reveal pre, .reveal div.highlight > pre, .reveal div.jp-OutputArea-output > pre {{
  box-sizing: border-box; width: 100%; margin: 0; padding: {CODE_PAD}px 8px; font-size: {CODE_PX}px;
  line-height: {CODE_LINE}px; white-space: pre-wrap; overflow-wrap: anywhere; }}
.reveal .jp-InputArea-editor {{ padding: 0; }}
.reveal .jp-OutputArea-output {{ padding: 0; overflow: visible; }}
.reveal .jp-CodeCell .jp-Cell-outputWrapper {{ margin-top: 4px; }}
.reveal .jp-OutputArea-output img {{ display: block; margin: 0; max-width: 100%; max-height: {IMAGE_MAX_H}px;
  width: auto; height: auto; }}
"""
# The last resort, run on the slide being shown: if its content is still taller (or wider) than the slide, shrink
# the cells with CSS zoom until it fits, but never below FIT_MIN_ZOOM (a scroll bar then remains). The chosen zoom
# is left in data-fit for tests/test_slides_browser.py. Opening an answer (<details>) refits the slide.
FIT_JS = """
function fitSlide(slide) {
  if (!slide) return;
  const parts = [...slide.children].filter(el => !['ASIDE', 'SECTION'].includes(el.tagName));
  const style = getComputedStyle(slide), padY = parseFloat(style.paddingTop) + parseFloat(style.paddingBottom);
  let zoom = 1;
  parts.forEach(el => el.style.zoom = "");
  for (let step = 0; step < 8 && zoom > MIN_ZOOM; step++) {
    const over = Math.max((slide.scrollHeight - padY) / (slide.clientHeight - padY),
                          slide.scrollWidth / slide.clientWidth);
    if (over <= 1.002) break;
    zoom = Math.max(MIN_ZOOM, Math.floor(zoom / over * 100) / 100);
    parts.forEach(el => el.style.zoom = zoom);
  }
  if (zoom < 1) slide.dataset.fit = zoom; else delete slide.dataset.fit;
}
const refit = () => fitSlide(Reveal.getCurrentSlide());
Reveal.on("ready", event => fitSlide(event.currentSlide));
Reveal.on("slidechanged", event => fitSlide(event.currentSlide));
window.addEventListener("load", refit);
document.fonts.ready.then(refit);
document.addEventListener("toggle", refit, true);
"""
SLIDES_TEMPLATE = "{%- extends 'index.html.j2' -%}" + OFFLINE_BLOCKS + """
{% block footer_js %}
<style>{% raw %}""" + SLIDE_CSS + """{% endraw %}</style>
<script src="{{ resources.reveal.url_prefix }}/dist/reveal.js"></script>
<script src="{{ resources.reveal.url_prefix }}/plugin/notes/notes.js"></script>
<script>
Reveal.initialize({controls: true, progress: true, hash: true, center: false, slideNumber: "c/t",
                   transition: "none", width: """ + f"{SLIDE_W}, height: {SLIDE_H}" + """, plugins: [RevealNotes]});
const MIN_ZOOM = """ + str(FIT_MIN_ZOOM) + ";\n{% raw %}" + FIT_JS + """{% endraw %}</script>
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
INDEX_INTRO = {
    "instructor": ("the course, with solutions and outputs", "Each page is a notebook of <code>notebooks/solutions/"
                   "</code> as executed; to run the code and do the exercises"),
    "student": ("the course, with outputs", "Each page is a notebook as executed, with the exercises left for you "
                "to do; to run the code and do them"),
}


# ---------------------------------------------------------------- the marks, without an emoji font


def _svg(label: str, body: str) -> str:
    return (f'<svg class="mark" role="img" aria-label="{label}" viewBox="0 0 16 16" width="1em" height="1em" '
            f'style="vertical-align: -0.125em">{body}</svg>')


MARKS = {  # each mark and what replaces it in the text of a page
    "🟢": _svg("core", '<circle cx="8" cy="8" r="7" fill="#2da44e"/>'),
    "🔵": _svg("optional", '<circle cx="8" cy="8" r="7" fill="#0969da"/>'),
    "⏱": _svg("time", '<g fill="none" stroke="#57606a" stroke-width="1.6" stroke-linecap="round"><circle cx="8" '
                     'cy="9.2" r="5.8"/><path d="M8 9.2V5.8M6.3 1.4h3.4M12.4 3.6l-1.1 1.1"/></g>'),
    "✅": _svg("passed", '<rect x="1" y="1" width="14" height="14" rx="3" fill="#2da44e"/><path d="M4.2 8.4l2.5 '
                       '2.5 5.1-5.4" fill="none" stroke="#fff" stroke-width="2" stroke-linecap="round" '
                       'stroke-linejoin="round"/>'),
    "❌": _svg("failed", '<path d="M3.5 3.5l9 9M12.5 3.5l-9 9" stroke="#cf222e" stroke-width="2.6" '
                       'stroke-linecap="round"/>'),
    "⏳": _svg("pending", '<g fill="none" stroke="#9a6700" stroke-width="1.4" stroke-linecap="round"><path d="M3.5 '
                        '1.5h9M3.5 14.5h9M4.8 1.5c0 4 6.4 4.4 6.4 6.5s-6.4 2.5-6.4 6.5M11.2 1.5c0 4-6.4 4.4-6.4 '
                        '6.5s6.4 2.5 6.4 6.5"/></g><path d="M6 13.2h4l-2-2.2z" fill="#9a6700"/>'),
}
MARK = re.compile("(" + "|".join(MARKS) + ")\ufe0f?")
# Where markup cannot go: inside a tag, or in the text of <script>, <style>, <title> and <textarea>.
NO_MARKUP = re.compile(r"(<(script|style|title|textarea)\b.*?</\2\s*>|<[^>]*>)", re.S | re.I)


def with_marks(page: str) -> str:
    """`page` with each mark drawn as an SVG picture; in tags and scripts, where a picture cannot go, the mark is
    written as a character reference (HTML) or an escape (script) so that no raw emoji remains anywhere."""
    parts = NO_MARKUP.split(page)  # text, markup, its tag name, text, markup, tag name, ...
    out = []
    for index, part in enumerate(parts):
        if index % 3 == 0:
            out.append(MARK.sub(lambda m: MARKS[m.group(1)], part))
        elif index % 3 == 1 and re.match(r"<(script|style)\b", part, re.I):
            out.append(MARK.sub(lambda m: json.dumps(m.group(1))[1:-1], part))  # \ud83d\udfe2: JSON and JS
        elif index % 3 == 1:
            out.append(MARK.sub(lambda m: f"&#x{ord(m.group(1)):X};", part))
    return "".join(out)


# ---------------------------------------------------------------- the two versions of a notebook


def tags(cell: NotebookNode) -> list[str]:
    found = cell.get("metadata", {}).get("tags", [])
    return found if isinstance(found, list) else []


def is_instructor_only(cell: NotebookNode) -> bool:
    return bool(INSTRUCTOR_TAGS.intersection(tags(cell)))


def is_notes(cell: NotebookNode) -> bool:
    return NOTES_TAG in tags(cell)


def is_exercise(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and bn.BEGIN in cell.source


def is_check(cell: NotebookNode) -> bool:
    """A cell that runs a checker: its stored verdict was earned by the solution."""
    return cell.cell_type == "code" and bn.CHECK_CALL.search(cell.source) is not None


def for_student(master: NotebookNode, name: str = "notebook") -> NotebookNode:
    """What a learner may see of a master: its student cells, exercises stubbed, outputs that give nothing away."""
    nb = copy.deepcopy(master)
    nb.cells = [cell for cell in nb.cells if not is_instructor_only(cell) and not is_notes(cell)]
    for index, cell in enumerate(nb.cells):
        if is_exercise(cell) or is_check(cell):
            cell.outputs, cell.execution_count = [], None
        if cell.cell_type == "code":
            cell.source = bn.stub_source(cell.source, f"{name}: cell {index} (code)")
    return nb


def without_markers(source: str) -> str:
    """Solution code as an instructor shows it: the BEGIN/END SOLUTION lines only mark it for the student build."""
    return "\n".join(line for line in source.split("\n") if bn.BEGIN not in line and bn.END not in line)


def for_instructor(master: NotebookNode) -> NotebookNode:
    nb = copy.deepcopy(master)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = without_markers(cell.source)
    return nb


# ---------------------------------------------------------------- which cells, which slides


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


def for_slides(nb: NotebookNode, deck: str, name: str = "notebook") -> NotebookNode:
    """A copy of `nb` (a master) as the `deck` version, with slide breaks set so that each slide fits."""
    nb = for_student(nb, name) if deck == "student" else for_instructor(nb)
    for index, cell in enumerate(nb.cells):
        show = cell.metadata.setdefault("slideshow", NotebookNode())
        if is_notes(cell):
            show.slide_type = "notes"
        show.setdefault("slide_type", slide_type(cell, index))
    nb.cells = [piece for cell in nb.cells for piece in split_tall(cell)]
    paginate(nb.cells)
    return nb


# ---------------------------------------------------------------- how tall a cell is on a slide (an estimate)


def wrapped(text: str, chars: float) -> int:
    """Screen lines of `text` when lines longer than `chars` characters wrap."""
    return sum(max(1, math.ceil(len(line.expandtabs(4)) / chars)) for line in text.split("\n"))


def code_box(text: str) -> float:
    """Height of a box of code or printed text: lines wrap at the slide's width (CSS pre-wrap)."""
    return wrapped(text.rstrip("\n"), (CONTENT_W - 16) / CODE_CHAR) * CODE_LINE + 2 * CODE_PAD


def png_size(data: str) -> tuple[int, int]:
    """Width and height of a base64 PNG, from its header."""
    head = base64.b64decode(data.replace("\n", "")[:64])
    return struct.unpack(">II", head[16:24])


ANSI = re.compile(r"\x1b\[[0-9;]*m")
SHOWN_FIRST = ("application/vnd.jupyter.widget-view+json", "text/html", "text/markdown", "image/svg+xml",
               "text/latex", "image/png", "image/jpeg", "text/plain")  # nbconvert's order for HTML


def output_height(output: NotebookNode) -> float:
    """Height of one output as nbconvert shows it (the first kind of data it knows, in its order)."""
    if output.output_type == "stream":
        return code_box(output.text)
    if output.output_type == "error":
        return code_box(ANSI.sub("", "\n".join(output.traceback)))
    data = output.get("data", {})
    mime = next((m for m in SHOWN_FIRST if m in data), None)
    if mime == "image/png":
        width, height = png_size(data[mime])
        return min(height * min(1.0, CONTENT_W / max(width, 1)), IMAGE_MAX_H) + 6
    if mime in ("text/plain", "text/latex"):
        return code_box(data[mime])
    if mime in ("text/html", "text/markdown"):
        return markdown_height(re.sub(r"<(br|tr|p|div|li)\b[^>]*>", "\n\n", data[mime]))
    return 0.0  # a widget (nothing without a kernel), or an image of unknown size


def code_height(cell: NotebookNode) -> float:
    """Height of a code cell: its code (unless hidden, as in the output half of a cut cell) and its outputs."""
    shown = cell.source.strip() and not cell.metadata.get("transient", {}).get("remove_source")
    inputs = code_box(cell.source) + 2 if shown else 0.0
    outputs = sum(output_height(output) for output in cell.get("outputs", []))
    return CELL_GAP + inputs + (outputs + 4 if outputs else 0.0)


HEADING = re.compile(r"^(#{1,6})\s")
ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+")
FENCE = re.compile(r"^\s*(```|~~~)")
TABLE_RULE = re.compile(r"^\s*\|[\s:|-]*\|\s*$")  # the |---|---| line under a table's head
HEADING_SIZE = {1: (46, 14, 40), 2: (37, 12, 32), 3: (29, 12, 24)}  # line height, margins, font size


def plain(text: str) -> str:
    """Roughly the characters a line of markdown shows: no link targets, emphasis, tags or TeX commands."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"\\[a-zA-Z]+", "x", text)
    return re.sub(r"[*_{}^$]", "", text)


def text_lines(text: str, width: float, char: float = TEXT_CHAR) -> int:
    """Screen lines of a paragraph of markdown at `width` px; `code` is wider than prose and padded."""
    shown = plain(text)
    spans = shown.count("`") // 2
    code = sum(len(span) for span in re.findall(r"`([^`]*)`", shown))
    advance = (len(shown) - 2 * spans) * char + code * 0.2 * char + spans * 10
    return max(1, math.ceil(advance / (width - WRAP_LOSS)))


def markdown_blocks(source: str) -> list[tuple[int, str, bool]]:
    """The blocks of a markdown cell (paragraphs, top-level list items, headings, fences, tables, quotes): for
    each, its first line's number, its text, and whether the cell may be cut before it: never inside a fence or a
    <details> answer, nor before an indented line (it would turn into a code block)."""
    blocks: list[tuple[int, str, bool]] = []
    current: list[str] = []
    fence = inside = False  # in a fenced block; in a <details> answer
    first, cut_allowed = 0, True

    def close(number: int) -> None:
        nonlocal first, cut_allowed
        if current:
            blocks.append((first, "\n".join(current), cut_allowed and not current[0][:1].isspace()))
            current.clear()
        first, cut_allowed = number, not inside

    for number, line in enumerate(source.split("\n")):
        if fence:
            current.append(line)
            if FENCE.match(line):
                fence = False
                close(number + 1)
            continue
        alone = bool(HEADING.match(line)) or "<details" in line or "</details>" in line
        if not line.strip() or alone or FENCE.match(line) or ITEM.match(line) and not line[0].isspace():
            close(number)
        if line.strip():
            current.append(line)
        fence = bool(FENCE.match(line))
        inside = (inside or "<details" in line) and "</details>" not in line
        if alone:
            close(number + 1)
    close(0)
    return blocks


def prose_height(block: str, width: float) -> float:
    """A paragraph, list item or quote: its logical lines (an item, a continuation) wrapped at `width`."""
    height, pending, indent = 0.0, "", 0
    for line in block.split("\n") + [None]:
        item = ITEM.match(line) if line is not None else None
        if line is None or item:
            if pending:
                height += text_lines(pending, width - indent) * TEXT_LINE
            if line is None:
                break
            pending, indent = line[item.end():], 40 * (1 + len(item.group(1)) // 2)
        else:
            pending += " " + line.strip()
    return height


def table_height(block: str) -> float:
    """A markdown table: each row as tall as its text wrapped across the width left by the cell paddings."""
    rows = [row.strip().strip("|").split("|") for row in block.split("\n") if not TABLE_RULE.match(row)]
    width = CONTENT_W - max(len(row) for row in rows) * (16 + WRAP_LOSS)
    lines = [text_lines("".join(row), width, TEXT_CHAR * TABLE_PX / TEXT_PX) for row in rows]
    return sum(n * TABLE_LINE + 9 for n in lines) + 10


def block_height(block: str) -> float:
    first = block.split("\n", 1)[0].strip()
    heading = HEADING.match(first)
    if heading:
        line, margin, size = HEADING_SIZE.get(len(heading.group(1)), HEADING_SIZE[3])
        return math.ceil(len(plain(first)) * size * 0.55 / CONTENT_W) * line + margin
    if FENCE.match(first):
        return code_box("\n".join(block.split("\n")[1:-1])) + 10
    if first.startswith("|"):
        return table_height(block)
    if first.startswith("$$"):
        return 64
    if first.startswith("<details"):
        return TEXT_LINE + 6
    if first.startswith("</details"):
        return 0.0
    if first.startswith(">"):
        return prose_height(re.sub(r"(?m)^\s*>\s?", "", block), CONTENT_W - 40) + 18
    return prose_height(block, CONTENT_W) + 10


def markdown_height(source: str) -> float:
    return CELL_GAP + sum(block_height(block) for _, block, _ in markdown_blocks(source))


def cell_height(cell: NotebookNode) -> float:
    """Estimated height of a cell on a slide, in slide px (0 for a cell not shown)."""
    if cell.metadata.get("slideshow", {}).get("slide_type") in ("skip", "notes"):
        return 0.0
    if cell.cell_type == "code":
        return code_height(cell)
    return markdown_height(cell.source)


# ---------------------------------------------------------------- cutting tall cells, breaking tall sub-slides


def piece(cell: NotebookNode, number: int, **changes) -> NotebookNode:
    """A copy of `cell` with `changes`; pieces after the first get their own id and no author's slide type."""
    part = copy.deepcopy(cell)
    part.update(changes)
    if number:
        part.id = f"{cell.get('id', 'cell')}-{number}"[:64]
        part.metadata.slideshow.slide_type = "-"
    return part


def split_markdown(cell: NotebookNode) -> list[NotebookNode]:
    """Cut a markdown cell taller than a slide between blocks, each piece as full as it can be."""
    lines = cell.source.split("\n")
    cuts, used, previous = [0], CELL_GAP, None  # the first line of each piece
    for number, block, cut_allowed in markdown_blocks(cell.source):
        height = block_height(block)
        if number > cuts[-1] and cut_allowed and used + height > BUDGET:
            keep_heading = previous and previous[0] > cuts[-1] and HEADING.match(previous[1])
            cuts.append(previous[0] if keep_heading else number)  # a heading goes with what it heads
            used = CELL_GAP + (block_height(previous[1]) if keep_heading else 0.0)
        used += height
        previous = (number, block)
    bounds = zip(cuts, cuts[1:] + [len(lines)])
    return [piece(cell, n, source="\n".join(lines[a:b]).strip("\n")) for n, (a, b) in enumerate(bounds)]


def split_code(cell: NotebookNode) -> list[NotebookNode]:
    """Cut a code cell taller than a slide: its code, then its outputs in groups that each fit."""
    groups: list[list[NotebookNode]] = [[]]
    used = CELL_GAP
    for output in cell.outputs:
        height = output_height(output)
        if groups[-1] and used + height > BUDGET:
            groups.append([])
            used = CELL_GAP
        groups[-1].append(output)
        used += height
    hidden = {"transient": {"remove_source": True}}
    parts = [piece(cell, 0, outputs=[])] if cell.source.strip() else []
    for group in groups:
        part = piece(cell, len(parts), outputs=group)
        part.metadata.update(copy.deepcopy(hidden))
        parts.append(part)
    return parts


def split_tall(cell: NotebookNode) -> list[NotebookNode]:
    """The cell, or its pieces if it is estimated taller than a slide (a single piece may still be)."""
    if cell_height(cell) <= BUDGET:
        return [cell]
    if cell.cell_type == "markdown":
        return split_markdown(cell)
    if cell.cell_type == "code" and cell.get("outputs"):
        return split_code(cell)
    return [cell]


def paginate(cells: list[NotebookNode]) -> None:
    """Start a new sub-slide at a cell that would make its sub-slide taller than the slide."""
    used = 0.0
    for cell in cells:
        show = cell.metadata.slideshow
        height = cell_height(cell)
        if show.slide_type in ("slide", "subslide"):
            used = height
        elif show.slide_type not in ("skip", "notes"):
            if used > 0 and used + height > BUDGET:
                show.slide_type = "subslide"
                used = 0.0
            used += height


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


def build_slides(out: Path, numbers: list[str] | None = None, folder: Path = MASTERS,
                 decks: tuple[str, ...] = DECKS) -> list[Path]:
    """Write the `decks` (student, instructor) of each master of `folder` under `out`; return the decks written."""
    slides, written = exporter("slides"), []
    copy_vendor(out, ("reveal.js", "katex"))
    for path in select(folder, numbers or []):
        master = nbformat.read(path, as_version=4)
        for deck in decks:
            nb = for_slides(master, deck, path.name)
            resources = {"katex_url": "../katex", "metadata": {"name": path.stem}}
            body, _ = slides.from_notebook_node(nb, resources=resources)
            target = out / deck / f"{path.stem}.slides.html"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(with_marks(body), encoding="utf-8")
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


def index_page(entries: list[tuple[Path, dict[str, str]]], deck: str = "instructor") -> str:
    items = "\n".join(
        f'<li class="notebook"><h2><a href="{path.stem}.html">{html.escape(head["title"])}</a></h2>\n'
        f'<p class="time">⏱ {html.escape(head["time"])}</p>\n{head["goals"]}</li>' for path, head in entries)
    title, intro = INDEX_INTRO[deck]
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>LoRA from Scratch</title>\n'
            f"{PAGE_STYLE}\n</head>\n<body>\n<h1>LoRA from Scratch — {title}</h1>\n"
            f"<p>Read in order. {intro}, open the notebooks in JupyterLab (<code>make lab</code>).</p>\n"
            f"<ol>\n{items}\n</ol>\n</body>\n</html>\n")


def build_html(out: Path, numbers: list[str] | None = None, folder: Path = MASTERS,
               deck: str = "instructor") -> list[Path]:
    """Render the masters of `folder` to pages under `out` (as they are, or as `for_student` makes them for the
    student deck), with an index.html; return the pages written."""
    page, written, entries = exporter("html"), [], []
    paths = select(folder, numbers or [])
    out.mkdir(parents=True, exist_ok=True)
    copy_vendor(out, ("katex",))
    for index, path in enumerate(paths):
        nb = nbformat.read(path, as_version=4)
        if deck == "student":
            nb = for_student(nb, path.name)
        resources = {"katex_url": "katex", "course_nav": navigation(paths, index), "metadata": {"name": path.stem}}
        body, _ = page.from_notebook_node(nb, resources=resources)
        (out / f"{path.stem}.html").write_text(with_marks(body), encoding="utf-8")
        written.append(out / f"{path.stem}.html")
        entries.append((path, header(nb)))
    (out / "index.html").write_text(with_marks(index_page(entries, deck)), encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("slides", "html"), help="slide decks or the readable HTML book")
    parser.add_argument("numbers", nargs="*", metavar="NN", help="only these notebooks (default: all)")
    parser.add_argument("--deck", choices=DECKS, help="slides: only this deck (default: both); html: the student "
                        "book in build/html/student/ (default: the instructor book in build/html/)")
    parser.add_argument("--out", type=Path, help="output folder (default: build/slides, build/html[/student])")
    args = parser.parse_args(argv)
    if args.what == "slides":
        out = args.out or REPO / "build" / "slides"
        written = build_slides(out, args.numbers, decks=(args.deck,) if args.deck else DECKS)
        first = written[0].relative_to(out)
    else:
        deck = args.deck or "instructor"
        out = args.out or REPO / "build" / "html" / ("student" if deck == "student" else "")
        written, first = build_html(out, args.numbers, deck=deck), "index.html"
    print(f"wrote {len(written)} {'decks' if args.what == 'slides' else 'pages'} under {out}; open {out / first}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
