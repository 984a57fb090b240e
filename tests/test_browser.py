"""What a person sees: a short link opened in a real browser, and the admin."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.browser import chromium_page

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
    # "localhost", not 127.0.0.1: the site is on 127.0.0.1, and a link to
    # its own host would be refused as a redirect loop.
    yield f"http://localhost:{server.server_port}"
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


def test_an_unknown_short_link_shows_the_json_error(live_site):
    with chromium_page() as page:
        response = page.goto(live_site.base_url + "/NoSuchX")
        assert response.status == 404
        assert '"URL not found"' in page.content()
