"""Debian's chromium, driven headless by Playwright (never a downloaded browser)."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.project import PROJECT_DIR

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


# The viewports the pages are checked at: a desktop and a phone.
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# axe-core, installed from npm by scripts/test.sh (pinned by tests/axe/package-lock.json).
AXE_SCRIPT = PROJECT_DIR / ".venv" / "axe-tools" / "node_modules" / "axe-core" / "axe.min.js"


@contextmanager
def chromium_page(
    *,
    user_agent: str | None = None,
    viewport: dict | None = None,
    permissions: list[str] | None = None,
    javascript: bool = True,
) -> Iterator:
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page(
                user_agent=user_agent,
                viewport=viewport,
                permissions=permissions,
                java_script_enabled=javascript,
            )
        finally:
            browser.close()


def serious_accessibility_violations(page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now,
    one line each (rule, impact, the first offending elements)."""
    if not AXE_SCRIPT.exists():
        pytest.skip("axe-core is not installed (scripts/test.sh installs it with npm into .venv/axe-tools)")
    page.add_script_tag(path=str(AXE_SCRIPT))
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{violation['id']} ({violation['impact']}): {[node['target'] for node in violation['nodes'][:3]]}"
        for violation in results["violations"]
        if violation["impact"] in ("serious", "critical")
    ]
