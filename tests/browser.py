"""Debian's chromium, driven headless by Playwright (never a downloaded browser)."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LANDING_HOST = "landing.test.example"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    # Names the tests' own pages are served under, resolved by the browser to
    # loopback (a short link to a loopback address would be refused as a loop).
    f"--host-resolver-rules=MAP {LANDING_HOST} 127.0.0.1",
]


@contextmanager
def chromium_page(*, user_agent: str | None = None) -> Iterator:
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page(user_agent=user_agent)
        finally:
            browser.close()
