"""The browser every page test uses: Debian's Chromium driven by Playwright (never a download:
no `playwright install`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from webpage import CHROMIUM_ARGS

from support.tools import require_tool


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    chromium = require_tool("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
