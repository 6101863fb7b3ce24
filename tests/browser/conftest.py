"""Fixtures for real-browser tests: a JupyterLab, Notebook 7 or Voila server and headless
Debian Chromium.

Each is started once per module and always torn down (a Jupyter server shut down through its
API, Voila with SIGTERM; then the process group and the recorded kernels killed).  Tests here
are skipped only when Chromium or the playwright package is missing, with the reason printed
by ``pytest -ra``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from labdriver import REPO_ROOT, JupyterLab, Voila, launch_browser, missing_requirements

ARTIFACTS = REPO_ROOT / "tests" / "_artifacts"


def pytest_collection_modifyitems(config, items):
    reason = missing_requirements()
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.browser)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lab")


@pytest.fixture(scope="module")
def lab(lab_root):
    server = JupyterLab(lab_root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_browser(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def notebook7(lab_root):
    """A Notebook 7 server (the same widget must work there too)."""
    server = JupyterLab(lab_root, app="notebook")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def voila_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("voila")


@pytest.fixture(scope="module")
def voila(voila_root):
    """A Voila server on the notebooks of ``voila_root`` (write them before opening a page);
    its kernels run the tutorial notebooks in smoke mode (``CI`` set)."""
    server = Voila(voila_root, env={"CI": os.environ.get("CI", "true")})
    server.start()
    try:
        yield server
    finally:
        server.stop()
