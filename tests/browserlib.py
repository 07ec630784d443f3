"""What the two browser tests share: finding Chromium, launching it headless under Playwright, and skipping
with the reason on a learner's machine but failing in CI, where a browser test must run (see ../shared notes in
tests/test_browser.py)."""
from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Iterator

import pytest

INSTALL_HINT = "install Chromium with `sudo apt-get install chromium` (or `make browser-deps` as root)"
CHROMIUM_FLAGS = [  # without the networking flags Chromium keeps trying hosts it cannot reach
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def not_run(reason: str, what: str = "browser test") -> None:
    """Skip with the reason on a learner's machine; fail in CI, where the browser test must run."""
    if in_ci():
        pytest.fail(f"the {what} could not run in CI: {reason}", pytrace=False)
    warnings.warn(f"{what} not run: {reason}", stacklevel=2)  # shown in pytest's summary even with -q
    pytest.skip(f"{what} not run: {reason}")


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return None


@contextlib.contextmanager
def launched_chromium(what: str = "browser test") -> Iterator[object]:
    """Headless Chromium under Playwright; skips (fails in CI) when either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        not_run("the Python package `playwright` is missing (pip install playwright; it is in .[dev])", what)
    executable = chromium_path()
    if executable is None:
        not_run(f"no Chromium on this machine; {INSTALL_HINT}", what)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()
