"""Every slide of every deck fits a 1280×720 screen: the decks measured in headless Chromium (Playwright).

scripts/render_course.py splits long sub-slides and wraps code so that nothing should need scrolling; this test
checks that by looking. It builds the student and the instructor deck of all the notebooks into a temporary
folder, opens each deck at a 1280×720 viewport, steps through every slide and sub-slide with the reveal.js API
(`Reveal.slide(h, v)`) and measures the slide on screen:
- the slide itself: content taller or wider than the slide box (`scrollHeight`/`scrollWidth` against
  `clientHeight`/`clientWidth`), or a slide box that reaches past the edge of the window;
- every block inside it that clips or scrolls (`pre`, code, outputs, tables: any element whose CSS overflow is
  not `visible`) and whose content is larger than its box — a code line cut on the right, an output box
  with a scroll bar.
Every answer (`<details>`) is opened first, so a slide must also fit with its answer shown. A slide that the deck
itself shrank to fit (render_course.py's last resort for a single very tall cell, never below FIT_MIN_ZOOM) counts
as fitting. The test fails with one line per overflowing slide: deck, h/v index, what overflows and by how many
px (slide px, before reveal.js scales the slide to the window). All 24 decks take about 35 s (build included).

Needs Debian's `chromium` and the PyPI package `playwright` (never `playwright install`). Without them the test
is skipped and says why; when the environment variable CI is set it fails instead (as tests/test_browser.py).

    python tests/test_slides_browser.py build/slides     # decks already built: every overflowing or shrunk slide
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from browserlib import CHROMIUM_FLAGS, chromium_path, launched_chromium

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1280, "height": 720}
DECKS = ("student", "instructor")
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))
TOLERANCE_PX = 1  # sub-pixel rounding

# Wait until the deck is laid out as a reader sees it: reveal ready, fonts and the embedded figures loaded. Every
# answer (<details>) is opened first: a slide must still fit when the instructor opens the answer on it.
READY = """async () => {
  if (!window.Reveal || !Reveal.isReady()) await new Promise(done => Reveal.on('ready', done));
  document.querySelectorAll('details').forEach(answer => { answer.open = true; });
  await document.fonts.ready;
  await Promise.all([...document.images].map(img => img.complete ? null : new Promise(done => {
    img.onload = img.onerror = done; })));
  await new Promise(done => requestAnimationFrame(() => setTimeout(done, 0)));
}"""
# Show every slide in turn and return, for each, what overflows. A clipped or scrolling block counts when its
# content is larger than its box; the slide counts when its content is larger than the slide or the slide
# reaches past the window.
MEASURE = """(tolerance) => {
  const found = [];
  let visited = 0;
  const clips = el => { const s = getComputedStyle(el);
    return [s.overflowX, s.overflowY].some(v => v !== 'visible') || s.textOverflow === 'ellipsis'; };
  const describe = el => el.tagName.toLowerCase() + (el.className && typeof el.className === 'string'
    ? '.' + el.className.trim().split(/\\s+/).slice(0, 2).join('.') : '');
  Reveal.getHorizontalSlides().forEach((stack, h) => {
    const count = Math.max(1, stack.querySelectorAll(':scope > section').length);
    for (let v = 0; v < count; v++) {
      Reveal.slide(h, v);
      visited++;
      const slide = Reveal.getCurrentSlide();
      const problems = [];
      const tall = slide.scrollHeight - slide.clientHeight, wide = slide.scrollWidth - slide.clientWidth;
      if (tall > tolerance) problems.push(`slide content ${slide.scrollHeight}px tall, box ${slide.clientHeight}px`);
      if (wide > tolerance) problems.push(`slide content ${slide.scrollWidth}px wide, box ${slide.clientWidth}px`);
      const box = slide.getBoundingClientRect();
      if (box.bottom > innerHeight + tolerance || box.right > innerWidth + tolerance || box.top < -tolerance)
        problems.push(`slide box ${Math.round(box.top)}..${Math.round(box.bottom)} px past the window`);
      for (const el of slide.querySelectorAll('pre, code, div, table, p, ul, ol, img, svg')) {
        if (!el.clientHeight && !el.clientWidth) continue;
        if (!clips(el)) continue;
        const dx = el.scrollWidth - el.clientWidth, dy = el.scrollHeight - el.clientHeight;
        if (dx > tolerance) problems.push(`${describe(el)} cut on the right by ${dx}px`);
        if (dy > tolerance) problems.push(`${describe(el)} cut at the bottom by ${dy}px`);
      }
      const fit = parseFloat(slide.dataset.fit || "1");
      if (problems.length || fit < 1) found.push({h, v, height: slide.scrollHeight, problems, fit});
    }
  });
  return {visited, found};
}"""


def measure(page, deck: Path) -> list[dict]:
    """Open `deck` in `page`; one record per slide that overflows or that the deck had to shrink (see MEASURE)."""
    page.goto(deck.resolve().as_uri())
    page.evaluate(READY)
    result = page.evaluate(MEASURE, TOLERANCE_PX)
    total = page.evaluate("Reveal.getTotalSlides()")
    assert result["visited"] == total > 1, f"{deck.name}: {result['visited']} of {total} slides visited"
    return result["found"]


def report(deck: Path, records: list[dict]) -> list[str]:
    """One line per record: deck, h/v index, what overflows (or how much the slide was shrunk to fit)."""
    return [f"{deck.parent.name}/{deck.name} slide h={r['h']} v={r['v']}: "
            + ("; ".join(r["problems"]) or f"fits, shrunk to {r['fit']:.2f}") for r in records]


# ---------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def browser_page() -> Iterator[object]:
    """A 1280×720 page in headless Chromium; skips (fails in CI) when Chromium or Playwright is missing."""
    with launched_chromium("slide browser test") as browser:
        yield browser.new_page(viewport=VIEWPORT)


@pytest.fixture(scope="module")
def built(tmp_path_factory, browser_page) -> Path:  # asks for the browser first: nothing is built for a skip
    spec = importlib.util.spec_from_file_location("render_course", ROOT / "scripts" / "render_course.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    out = tmp_path_factory.mktemp("slides")
    render.build_slides(out)
    return out


@pytest.mark.parametrize("deck", DECKS)
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_slide_fits_a_1280x720_screen(browser_page, built, deck, notebook):
    path = built / deck / f"{notebook}.slides.html"
    records = measure(browser_page, path)
    total = browser_page.evaluate("Reveal.getTotalSlides()")
    overflowing = [r for r in records if r["problems"]]
    assert not overflowing, f"{len(overflowing)} of {total} slides overflow 1280×720:\n" + "\n".join(
        report(path, overflowing))


# ---------------------------------------------------------------- measuring decks already built


def main(folder: Path) -> int:
    """Print every overflowing or shrunk slide of the decks under folder/{student,instructor}; exit 1 on overflow."""
    from playwright.sync_api import sync_playwright

    overflowing, shrunk, slides, worst = 0, [], 0, (0, "")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport=VIEWPORT)
        for deck in sorted(folder.glob("*/*.slides.html")):
            records = measure(page, deck)
            slides += page.evaluate("Reveal.getTotalSlides()")
            for record, line in zip(records, report(deck, records)):
                print(line)
                overflowing += bool(record["problems"])
                shrunk += [record["fit"]] if record["fit"] < 1 else []
                worst = max(worst, (record["height"], line)) if record["problems"] else worst
        browser.close()
    print(f"{overflowing} of {slides} slides overflow 1280×720; tallest overflowing slide: {worst[0]} px {worst[1]}")
    print(f"{len(shrunk)} slides shrunk to fit, the most to {min(shrunk, default=1):.2f}")
    return 1 if overflowing else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build" / "slides")))
