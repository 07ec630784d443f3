"""Notebook 01's rank slider in a real browser: JupyterLab driven by headless Chromium (Playwright).

The nbval runs prove the notebooks' code; they cannot see a widget. This test starts JupyterLab the way
`make lab` does (the venv's `jupyter lab`, the repository as root folder), opens the student notebook
notebooks/01_rank_and_svd.ipynb, runs the cells the slider needs, moves the rank slider one step with the
keyboard and checks that the compressed picture, its title ("rank r: error e") and the printed line
("rank r: relative error e ...") change, and that the printed error falls. Screenshots before and after
are kept in build/browser-test/.

Needs Debian's `chromium` and the PyPI package `playwright` (never `playwright install`: it downloads a
browser of its own). Without them the test is skipped and says how to install them; when the
environment variable CI is set it fails instead, because CI must run it (`make browser-deps` installs
Chromium there). Also: `python tests/test_browser.py --readme-shot docs/img/notebook_01_rank_slider.png`.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from browserlib import launched_chromium

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/01_rank_and_svd.ipynb"
WIDGET_MARK = "interact(show_rank"  # the slider cell is the one that calls this
ARTIFACTS = Path(os.environ.get("BROWSER_TEST_ARTIFACTS", ROOT / "build" / "browser-test"))
LAB_SETTINGS = {  # for the test's own JupyterLab only: never write the notebook, no news toast
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},  # every cell in the DOM
}


# ---------------------------------------------------------------- which cells the slider needs


def defined_and_used(nodes: list[ast.AST]) -> tuple[set[str], set[str]]:
    """Names a piece of code defines and names it reads; a function's own locals and arguments are not read."""
    stores, loads = set(), set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stores.add(node.name)
            inner_stores, inner_loads = defined_and_used(node.body)
            arguments: set[str] = set()
            stack.extend(node.decorator_list)
            if not isinstance(node, ast.ClassDef):
                arguments = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
                stack.extend(d for d in node.args.defaults + node.args.kw_defaults if d is not None)
            loads |= inner_loads - inner_stores - arguments
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            stores |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Name):
            (stores if isinstance(node.ctx, ast.Store) else loads).add(node.id)
        stack.extend(ast.iter_child_nodes(node))
    return stores, loads


def cells_needed(sources: list[str | None], target: int) -> list[int]:
    """Indices of the code cells up to `target` that define a name `target` reads, directly or not.

    `sources` has None for markdown cells. A cell that does not parse (a magic) is kept, to be safe.
    """
    needed: set[str] = set()
    chosen = []
    for index in range(target, -1, -1):
        if sources[index] is None:
            continue
        try:
            stores, loads = defined_and_used(ast.parse(sources[index]).body)
        except SyntaxError:
            chosen.append(index)  # a magic: run it, it may define anything
            continue
        if index == target or stores & needed:
            chosen.append(index)
            needed = (needed - stores) | loads  # `x = f(x)` still needs an earlier x
    return sorted(chosen)


def slider_plan() -> tuple[int, list[int]]:
    """The slider cell's index in the notebook and the code cells to run, in order, to show it."""
    cells = json.loads((ROOT / NOTEBOOK).read_text(encoding="utf-8"))["cells"]
    sources = ["".join(c["source"]) if c["cell_type"] == "code" else None for c in cells]
    targets = [i for i, s in enumerate(sources) if s and WIDGET_MARK in s]
    assert len(targets) == 1, f"{NOTEBOOK} should have exactly one cell calling {WIDGET_MARK}(...)"
    return targets[0], cells_needed(sources, targets[0])


def test_the_slider_needs_the_setup_the_image_and_the_exercises_it_calls():
    target, plan = slider_plan()
    sources = json.loads((ROOT / NOTEBOOK).read_text(encoding="utf-8"))["cells"]
    chosen = ["".join(sources[i]["source"]) for i in plan]
    assert plan[-1] == target and len(plan) < target / 3  # a slice, not the whole notebook
    assert any("import torch" in s for s in chosen) and any("grace_hopper" in s for s in chosen)
    assert any("checks.check_relative_error" in s for s in chosen)
    assert not any("plt.subplots" in s for s in chosen[:-1])  # the static figures are not needed


# ---------------------------------------------------------------- the server and the browser


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lab_command(port: int, settings: Path) -> list[str]:
    """`make lab`'s command, headless on a loopback port, no token (this test only)."""
    jupyter = Path(sys.executable).with_name("jupyter")
    command = [str(jupyter), "lab"] if jupyter.exists() else [sys.executable, "-m", "jupyterlab"]
    root = ["--allow-root"] if hasattr(os, "getuid") and os.getuid() == 0 else []
    return command + root + [
        "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        "--IdentityProvider.token=", "--ServerApp.password=", "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={settings / 'settings'}", f"--LabApp.workspaces_dir={settings / 'ws'}",
    ]


def wait_for_lab(url: str, server: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"JupyterLab exited with code {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/lab", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"JupyterLab did not answer {url}/lab within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def running_lab() -> Iterator[str]:
    """JupyterLab on a free loopback port for as long as the block runs; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="lab-test-") as tmp:
        folder = Path(tmp)
        for name, values in LAB_SETTINGS.items():
            (folder / "settings" / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / "settings" / name).write_text(json.dumps(values))
        port, log = free_port(), folder / "server.log"
        with open(log, "w") as out:
            server = subprocess.Popen(lab_command(port, folder), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_lab(f"http://127.0.0.1:{port}", server, log)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()  # its own PID only; JupyterLab shuts its kernels down on SIGTERM
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    with launched_chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def lab_url(chromium) -> Iterator[str]:  # asks for the browser first: no server is started for a skip
    with running_lab() as url:
        yield url


# ---------------------------------------------------------------- driving JupyterLab

KERNEL_READY = """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && w.context.path.endsWith('01_rank_and_svd.ipynb'); }"""
RUN_CELL = """async ([index, seconds]) => { const panel = window.jupyterapp.shell.currentWidget;
  panel.content.activeCellIndex = index;
  const run = window.jupyterapp.commands.execute('notebook:run-cell').then(() => false);
  const late = new Promise(done => setTimeout(() => done(true), 1000 * seconds));
  if (await Promise.race([run, late])) return ['it did not finish within ' + seconds + ' s'];
  const outputs = panel.content.model.cells.get(index).toJSON().outputs || [];
  return outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue); }"""
IMAGE_CHANGED = """([index, before]) => {
  const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
  const image = cell && cell.querySelector('.jp-OutputArea-output img');
  return !!image && image.src !== before; }"""


def open_notebook(browser, url: str, viewport: dict[str, int]):
    """A page with notebook 01 open and its kernel connected."""
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(60_000)
    page.goto(f"{url}/lab/tree/{NOTEBOOK}")
    page.wait_for_function(KERNEL_READY, timeout=90_000)
    return page


def run_cells(page, indices: list[int], seconds: int = 240) -> None:
    for index in indices:
        errors = page.evaluate(RUN_CELL, [index, seconds])
        assert not errors, f"cell {index} of {NOTEBOOK} raised in the browser: {errors}"


def show_slider(page) -> tuple[object, int]:
    """Run the cells the slider needs; return its cell (a locator) once slider and picture are drawn."""
    target, plan = slider_plan()
    run_cells(page, plan)
    cell = page.locator(".jp-Notebook .jp-Cell").nth(target)
    cell.locator(".widget-slider .noUi-handle").wait_for()
    cell.locator(".jp-OutputArea-output img").wait_for()
    return cell, target


def picture(src: str, keep: Path):
    """The PNG of a data: URL as an array (rows, columns, channels); its bytes are also written to `keep`."""
    import matplotlib.image

    assert src.startswith("data:image/png;base64,"), f"the output is not an inline PNG: {src[:60]}"
    keep.write_bytes(base64.b64decode(src.split(",", 1)[1]))
    return matplotlib.image.imread(io.BytesIO(keep.read_bytes()), format="png")


def test_rank_slider_redraws_the_picture_and_its_error(chromium, lab_url):
    notebook_before = hashlib.sha256((ROOT / NOTEBOOK).read_bytes()).hexdigest()
    page = open_notebook(chromium, lab_url, {"width": 1280, "height": 900})
    cell, target = show_slider(page)
    image, readout = cell.locator(".jp-OutputArea-output img"), cell.locator(".widget-readout")
    printed = cell.locator(".jp-OutputArea-output pre", has_text="relative error")
    before_src, before_rank = image.get_attribute("src"), readout.inner_text().strip()
    before_text = printed.first.inner_text().strip()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cell.locator(".jp-Cell-outputArea").screenshot(path=ARTIFACTS / "before.png")

    cell.locator(".widget-slider .noUi-handle").focus()
    page.keyboard.press("ArrowRight")  # one rank up, as a learner's keyboard would
    page.wait_for_function(IMAGE_CHANGED, arg=[target, before_src], timeout=120_000)
    after_src, after_rank = image.get_attribute("src"), readout.inner_text().strip()
    printed.filter(has_text=f"rank {after_rank}:").first.wait_for()  # the printed line follows the slider
    after_text = printed.first.inner_text().strip()
    cell.locator(".jp-Cell-outputArea").screenshot(path=ARTIFACTS / "after.png")
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    print(f"\nbrowser test screenshots: {ARTIFACTS / 'before.png'} and {ARTIFACTS / 'after.png'}")

    assert int(after_rank) == int(before_rank) + 1, f"one step right should go from rank {before_rank} up by one"
    assert before_text.startswith(f"rank {before_rank}: relative error") and after_text.startswith(
        f"rank {after_rank}: relative error"), (before_text, after_text)
    error = lambda text: float(text.split("relative error ")[1].split()[0])  # noqa: E731
    assert error(after_text) < error(before_text), "one more rank must lower the printed error (Eckart–Young)"
    old = picture(before_src, ARTIFACTS / f"figure_rank{before_rank}.png")
    new = picture(after_src, ARTIFACTS / f"figure_rank{after_rank}.png")
    assert old.shape == new.shape, "the figure keeps its size"
    rows, columns = old.shape[:2]
    left_title = (slice(0, rows // 12), slice(0, 2 * columns // 5))  # "rank r: error e", above the photograph
    left_photo = (slice(rows // 5, 4 * rows // 5), slice(columns // 20, columns // 3))
    assert (old[left_title] != new[left_title]).any(), "the error printed in the title did not change"
    assert (old[left_photo] != new[left_photo]).any(), "the compressed photograph did not change"
    after = hashlib.sha256((ROOT / NOTEBOOK).read_bytes()).hexdigest()
    assert after == notebook_before, f"the browser session wrote to {NOTEBOOK}"


# ---------------------------------------------------------------- the README's picture


def readme_shot(path: Path, max_bytes: int = 300_000) -> None:
    """Screenshot JupyterLab with notebook 01's slider and compressed photograph, small enough for the README."""
    from PIL import Image

    with launched_chromium() as browser, running_lab() as url:
        page = open_notebook(browser, url, {"width": 1200, "height": 760})
        page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")
        cell, _ = show_slider(page)
        handle = cell.locator(".widget-slider .noUi-handle")
        handle.focus()
        for _ in range(10):  # rank 20 -> 30, to show the slider in use
            page.keyboard.press("ArrowRight")
        cell.locator(".widget-readout", has_text="30").wait_for()
        cell.locator(".jp-Cell-outputArea img").wait_for()
        page.wait_for_timeout(1500)  # let the redrawn figure settle
        cell.locator(".jp-Cell-outputArea").evaluate("e => e.scrollIntoView({block: 'end'})")
        shot = page.screenshot()
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    image = Image.open(io.BytesIO(shot)).convert("RGB").quantize(colors=128)  # a palette PNG: a third of the size
    image.save(path, optimize=True)
    size = path.stat().st_size
    assert size <= max_bytes, f"{path} is {size:,} bytes, over the README's {max_bytes:,}"
    print(f"wrote {path} ({size:,} bytes)")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--readme-shot":
        sys.exit("usage: python tests/test_browser.py --readme-shot docs/img/notebook_01_rank_slider.png")
    readme_shot(Path(sys.argv[2]))
