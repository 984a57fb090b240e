"""What a person sees: a short link opened in a real browser, and the admin."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.browser import LANDING_HOST, chromium_page
from tests.project import BROWSER_USER_AGENT

pytestmark = pytest.mark.browser


class LandingPage(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"<html><head><title>Landed</title></head><body>{self.path}</body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def landing_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), LandingPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Not a loopback name: a link to this machine would be refused as a loop.
    # The browser resolves LANDING_HOST to 127.0.0.1 (tests/browser.py).
    yield f"http://{LANDING_HOST}:{server.server_port}"
    server.shutdown()


def test_a_browser_follows_a_short_link_to_its_page(live_site, landing_server):
    target = f"{landing_server}/welcome?from=short"
    short_url = httpx.post(live_site.base_url + "/", json={"url": target}).json()["short_url"]
    with chromium_page() as page:
        response = page.goto(short_url)
        assert page.url == target
        assert page.title() == "Landed"
        assert response.request.redirected_from.url == short_url
        assert response.request.redirected_from.response().status == 308


def test_the_admin_login_page_is_styled(live_site):
    with chromium_page() as page:
        css_responses = []
        page.on("response", lambda r: css_responses.append(r) if r.url.endswith(".css") else None)
        page.goto(live_site.base_url + "/admin/login/")
        assert page.title().startswith("Log in")
        assert css_responses and all(r.status == 200 for r in css_responses)
        # The stylesheet applied: Django's admin header has its coloured background.
        header_bg = page.eval_on_selector("#header", "e => getComputedStyle(e).backgroundColor")
        assert header_bg not in ("rgba(0, 0, 0, 0)", "transparent")
        page.screenshot(path=str(live_site.data_dir / "admin-login.png"))


def test_an_unknown_short_link_shows_a_page_to_the_browser_and_json_to_curl(live_site):
    with chromium_page() as page:
        response = page.goto(live_site.base_url + "/NoSuchX")
        assert response.status == 404
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert page.inner_text("h1") == "Link not found"
        assert page.inner_text("#message") == "URL not found."
    curl = httpx.get(live_site.base_url + "/NoSuchX", headers={"Accept": "*/*"})
    assert (curl.status_code, curl.json()) == (404, {"error": "URL not found"})


def test_preview_page_continues_to_the_target_and_counts_the_click(live_site, landing_server):
    target = f"{landing_server}/after-preview"
    slug = httpx.post(live_site.base_url + "/", json={"url": target}).json()["short_slug"]
    with chromium_page(user_agent=BROWSER_USER_AGENT) as page:
        page.goto(f"{live_site.base_url}/{slug}+")
        assert page.inner_text("#destination") == target
        qr_loaded = page.eval_on_selector("img", "img => img.complete && img.naturalWidth > 0")
        assert qr_loaded
        page.screenshot(path=str(live_site.data_dir / "preview.png"))
        page.click("#continue")
        page.wait_for_url(target)
    key = live_site.manage("issue_api_key", "--name", "browser").stdout.split()[-1]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        detail = httpx.get(
            f"{live_site.base_url}/api/links/{slug}/", headers={"Authorization": f"Bearer {key}"}
        )
        if detail.json()["clicks"] == 1:
            break
        time.sleep(0.2)
    assert detail.json()["clicks"] == 1


def test_preview_of_a_hostile_stored_url_runs_no_script(live_site):
    hostile = "https://example.com/?q=\"><script>alert('x')</script><img src=x onerror=alert(2)>"
    # Stored as a row written before the URL rule existed, or by raw SQL, would be.
    live_site.query(
        "INSERT INTO links_link (slug, original_url, is_canonical, created_at, is_active) "
        "VALUES ('hostile1', %s, %s, '2026-01-01 00:00:00', %s)",
        (hostile, False, True),
    )
    dialogs = []
    with chromium_page() as page:
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(f"{live_site.base_url}/hostile1+")
        page.wait_for_timeout(300)
        assert page.inner_text("#destination") == hostile
        assert page.query_selector("#destination script") is None
    assert dialogs == []


def test_swagger_ui_renders_offline(live_site):
    with chromium_page() as page:
        failed = []
        page.on("requestfailed", lambda request: failed.append(request.url))
        page.goto(f"{live_site.base_url}/api/docs/")
        page.wait_for_selector(".swagger-ui .title", timeout=15000)
        assert "shortener API" in page.inner_text(".swagger-ui .title")
        assert page.query_selector("text=/api/links/") is not None
    assert failed == []
