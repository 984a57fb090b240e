"""The pages people use, in Debian's chromium at a desktop's and a phone's
width: shortening from the home page, the visitors' error pages, the admin
made for short links, and axe-core's accessibility check on each of them."""

import sqlite3
import subprocess
import sys
import time

import httpx
import pytest

from tests.browser import DESKTOP, PHONE, chromium_page, serious_accessibility_violations
from tests.conftest import PROJECT_DIR
from tests.project import BROWSER_USER_AGENT
from tests.test_browser import landing_server  # noqa: F401 (a fixture)

pytestmark = pytest.mark.browser

VIEWPORTS = pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
ADMIN_PASSWORD = "a long browser password"


def assert_accessible(page) -> None:
    assert serious_accessibility_violations(page) == [], page.url


def assert_no_sideways_scroll(page) -> None:
    width = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width[0] <= width[1], f"{page.url}: {width[0]} px wide in a {width[1]} px window"


def shorten(page, site, url: str, *, alias: str | None = None):
    page.goto(site.base_url + "/")
    page.fill("#url", url)
    if alias:
        page.click("summary")
        page.fill("#slug", alias)
    with page.expect_navigation() as navigation:
        page.click("button[type=submit]")
    return navigation.value


@VIEWPORTS
def test_shorten_from_the_home_page_and_follow_the_short_link(live_site, landing_server, viewport):  # noqa: F811
    target = f"{landing_server}/from-home?w={viewport['width']}"
    with chromium_page(viewport=viewport) as page:
        page.goto(live_site.base_url + "/")
        assert page.title() == "Shorten a link · Shortener"
        # A browser runs autofocus in a rendering step after the load event that
        # goto() waits for, not at it: a fresh container's run once asked too soon.
        page.wait_for_function("() => document.activeElement.id === 'url'", timeout=5_000)
        assert page.evaluate("() => document.activeElement.id") == "url"
        assert_no_sideways_scroll(page)
        assert_accessible(page)
        response = shorten(page, live_site, target)
        assert response.status == 201
        short_url = page.get_attribute("#short-url", "href")
        assert page.inner_text("#short-url") == short_url
        assert short_url.startswith(live_site.base_url + "/")
        assert page.eval_on_selector("#qr", "img => img.complete && img.naturalWidth > 0")
        assert page.get_attribute("#preview", "href") == "/" + short_url.rsplit("/", 1)[1] + "+"
        assert_no_sideways_scroll(page)
        assert_accessible(page)
        if viewport is DESKTOP:
            page.screenshot(path=str(live_site.data_dir / "home-result-desktop.png"))
        else:
            page.screenshot(path=str(live_site.data_dir / "home-result-phone.png"), full_page=True)
        page.click("#short-url")
        page.wait_for_url(target)
        assert page.title() == "Landed"
    # The same link the API gives for that URL.
    api = httpx.post(live_site.base_url + "/", json={"url": target})
    assert (api.status_code, api.json()["short_url"]) == (200, short_url)


def test_the_copy_button_copies_the_short_url(live_site):
    with chromium_page(viewport=DESKTOP, permissions=["clipboard-read", "clipboard-write"]) as page:
        shorten(page, live_site, "https://example.com/copy-me")
        short_url = page.get_attribute("#short-url", "href")
        page.focus("#copy")
        page.keyboard.press("Enter")  # by keyboard, as anyone may
        page.wait_for_function("() => document.getElementById('copy-status').textContent !== ''")
        assert page.inner_text("#copy-status") == f"Copied {short_url}"
        assert page.evaluate("() => navigator.clipboard.readText()") == short_url


def test_the_page_works_without_javascript(live_site):
    with chromium_page(viewport=PHONE, javascript=False) as page:
        shorten(page, live_site, "https://example.com/no-script")
        assert page.inner_text("#short-url").startswith(live_site.base_url + "/")
        assert page.is_hidden("#copy")  # nothing that cannot work is shown


@VIEWPORTS
def test_an_invalid_url_shows_the_error_in_the_page(live_site, viewport):
    with chromium_page(viewport=viewport) as page:
        response = shorten(page, live_site, "example dot com")
        assert response.status == 400
        assert "Only absolute http:// and https:// URLs" in page.inner_text("#url-error")
        assert page.get_attribute("#url", "aria-invalid") == "true"
        assert page.input_value("#url") == "example dot com"
        assert page.is_visible("#error")
        assert_no_sideways_scroll(page)
        assert_accessible(page)
        if viewport is PHONE:
            page.screenshot(path=str(live_site.data_dir / "home-error-phone.png"), full_page=True)


@VIEWPORTS
def test_a_taken_alias_shows_the_conflict(live_site, viewport):
    alias = f"taken-{viewport['width']}"
    first = httpx.post(live_site.base_url + "/", json={"url": "https://example.com/owner", "slug": alias})
    assert first.status_code == 201
    with chromium_page(viewport=viewport) as page:
        response = shorten(page, live_site, "https://example.com/someone-else", alias=alias)
        assert response.status == 409
        assert (
            page.inner_text("#slug-error")
            == f"The alias '{alias}' is already taken by another URL; choose another."
        )
        assert page.get_attribute("details", "open") is not None  # the options stay open
        assert_accessible(page)
    assert httpx.get(f"{live_site.base_url}/{alias}").headers["location"] == "https://example.com/owner"


@VIEWPORTS
def test_the_404_and_410_pages(live_site, viewport):
    with sqlite3.connect(live_site.data_dir / "shortener.sqlite3") as db:
        db.execute(
            "INSERT OR IGNORE INTO links_link (slug, original_url, is_canonical, created_at, "
            "is_active, expires_at) VALUES ('expired1', 'https://example.com/old', 0, "
            "'2026-01-01 00:00:00', 1, '2026-01-02 00:00:00')"
        )
    with chromium_page(viewport=viewport) as page:
        for path, status, title, message in (
            ("/NoSuchLink", 404, "Link not found", "URL not found."),  # the fast path's answer
            ("/expired1", 410, "Link no longer available", "This link has expired."),  # Django's
            ("/expired1+", 410, "Link no longer available", "This link has expired."),
        ):
            response = page.goto(live_site.base_url + path)
            assert response.status == status, path
            assert page.inner_text("h1") == title
            assert page.inner_text("#message") == message
            assert_no_sideways_scroll(page)
            assert_accessible(page)
            page.click("text=Go to the home page")
            page.wait_for_url(live_site.base_url + "/")
    for path, status, message in (
        ("/NoSuchLink", 404, "URL not found"),
        ("/expired1", 410, "This link has expired"),
    ):
        answer = httpx.get(live_site.base_url + path, headers={"Accept": "*/*"})
        assert (answer.status_code, answer.json()) == (status, {"error": message})


def test_the_fast_path_and_django_answer_the_same_404_page(live_site):
    from links.pages import visitor_error_page
    from tests.test_pages import BROWSER_ACCEPT

    disabled = httpx.post(live_site.base_url + "/", json={"url": "https://example.com/to-disable"}).json()
    with sqlite3.connect(live_site.data_dir / "shortener.sqlite3") as db:
        db.execute("UPDATE links_link SET is_active = 0 WHERE slug = ?", (disabled["short_slug"],))
    page = visitor_error_page(status=404, message="URL not found")
    # An unknown slug is the fast path's answer; a disabled link, Django's.
    for slug in ("NoSuchSlug9", disabled["short_slug"]):
        answer = httpx.get(f"{live_site.base_url}/{slug}", headers={"Accept": BROWSER_ACCEPT})
        assert answer.status_code == 404
        assert answer.headers["content-type"] == page["Content-Type"]
        assert answer.content == page.content, slug


def test_api_clients_still_get_the_health_answer_byte_for_byte(live_site):
    for headers in ({"Accept": "*/*", "User-Agent": "curl/8.14.1"}, {"Accept": "application/json"}, {}):
        response = httpx.get(live_site.base_url + "/", headers=headers)
        assert response.status_code == 200
        assert response.content == b'{"status":"ok"}'
        assert response.headers["content-type"] == "application/json"


def test_the_preview_page_is_accessible(live_site):
    slug = httpx.post(live_site.base_url + "/", json={"url": "https://example.com/preview-a11y"}).json()[
        "short_slug"
    ]
    for viewport in (DESKTOP, PHONE):
        with chromium_page(viewport=viewport) as page:
            page.goto(f"{live_site.base_url}/{slug}+")
            assert_no_sideways_scroll(page)
            assert_accessible(page)


# --- the admin ------------------------------------------------------------------


@pytest.fixture(scope="module")
def admin_user(live_site) -> str:
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "createsuperuser",
            "--noinput",
            "--username",
            "boss",
            "--email",
            "b@example.com",
        ],
        cwd=PROJECT_DIR,
        env={**live_site.env, "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
        check=True,
        capture_output=True,
    )
    return "boss"


def log_in(page, site, username: str) -> None:
    page.goto(site.base_url + "/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", ADMIN_PASSWORD)
    with page.expect_navigation():
        page.click("input[type=submit]")
    assert page.title() == "Short links and API keys | Shortener admin"


def test_the_admin_list_needs_no_sideways_scroll_at_1280_px(live_site, admin_user):
    long_url = "https://example.com/" + "a" * 1980
    created = httpx.post(live_site.base_url + "/", json={"url": long_url, "slug": "very-long"})
    assert created.status_code == 201
    with chromium_page(viewport=DESKTOP, permissions=["clipboard-read", "clipboard-write"]) as page:
        log_in(page, live_site, admin_user)
        page.goto(live_site.base_url + "/admin/links/link/")
        assert page.inner_text("#site-name") == "Shortener administration"
        assert_no_sideways_scroll(page)
        results = page.eval_on_selector(".results", "e => [e.scrollWidth, e.clientWidth]")
        assert results[0] <= results[1], results
        # Every column is on screen, the last ones included.
        for column in ("column-clicks", "column-last_click", "column-status", "column-tools"):
            box = page.locator(f"th.{column}").bounding_box()
            assert box is not None and box["x"] + box["width"] <= DESKTOP["width"], column
        row = page.locator("tr", has=page.locator("text=very-long")).first
        assert row.locator(".short-url").inner_text() == f"{live_site.base_url}/very-long"
        assert row.locator(".destination").get_attribute("title") == long_url
        assert_accessible(page)
        page.screenshot(path=str(live_site.data_dir / "admin-list.png"))
        copy = row.locator(".copy-button")
        assert copy.is_visible()
        copy.click()
        assert page.evaluate("() => navigator.clipboard.readText()") == f"{live_site.base_url}/very-long"
        assert_accessible(page)  # "Copied" too


def test_the_admin_opens_the_existing_link_for_a_url_that_has_one(live_site, admin_user):
    slug = httpx.post(live_site.base_url + "/", json={"url": "https://example.com/had-one"}).json()[
        "short_slug"
    ]
    with chromium_page(viewport=DESKTOP) as page:
        log_in(page, live_site, admin_user)
        page.goto(live_site.base_url + "/admin/links/link/add/")
        assert_accessible(page)
        page.fill("#id_original_url", "https://example.com/had-one")
        with page.expect_navigation():
            page.click("input[name=_save]")
        assert page.url.endswith("/change/")
        assert f"This URL already had a link: /{slug}" in page.inner_text(".messagelist")
        assert page.inner_text("#short-url") == f"{live_site.base_url}/{slug}"
    key = live_site.manage("issue_api_key", "--name", "admin-dup").stdout.split()[-1]
    found = httpx.get(
        live_site.base_url + "/api/links/",
        params={"search": "had-one"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert found.json()["count"] == 1


def test_the_clicks_chart_shows_the_counted_clicks(live_site, admin_user):
    slug = httpx.post(live_site.base_url + "/", json={"url": "https://example.com/charted"}).json()[
        "short_slug"
    ]
    for _ in range(3):
        assert (
            httpx.get(f"{live_site.base_url}/{slug}", headers={"User-Agent": BROWSER_USER_AGENT}).status_code
            == 308
        )
    key = live_site.manage("issue_api_key", "--name", "chart").stdout.split()[-1]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        detail = httpx.get(
            f"{live_site.base_url}/api/links/{slug}/", headers={"Authorization": f"Bearer {key}"}
        )
        if detail.json()["daily_clicks"] and detail.json()["daily_clicks"][0]["count"] == 3:
            break
        time.sleep(0.2)
    today = detail.json()["daily_clicks"][0]["day"]
    link_id = (
        sqlite3.connect(live_site.data_dir / "shortener.sqlite3")
        .execute("SELECT id FROM links_link WHERE slug = ?", (slug,))
        .fetchone()[0]
    )
    with chromium_page(viewport=DESKTOP) as page:
        log_in(page, live_site, admin_user)
        page.goto(f"{live_site.base_url}/admin/links/link/{link_id}/change/")
        assert page.inner_text("#short-url") == f"{live_site.base_url}/{slug}"
        assert page.is_visible(".link-overview .copy-button")
        bar = page.locator(f'.clicks-chart rect[data-day="{today}"]')
        assert bar.get_attribute("data-count") == "3"
        assert float(bar.get_attribute("height")) > 0
        assert bar.locator("title").text_content() == f"{today}: 3 click(s)"
        assert page.locator(".clicks-chart rect.bar").count() == 30
        assert page.locator("svg.segno").count() == 1  # the QR code
        assert_accessible(page)
        page.screenshot(path=str(live_site.data_dir / "admin-change.png"), full_page=True)
    with chromium_page(viewport=PHONE) as page:
        log_in(page, live_site, admin_user)
        page.goto(f"{live_site.base_url}/admin/links/link/{link_id}/change/")
        assert_accessible(page)
