"""Swagger UI (/api/docs/) in Debian's chromium, as a person uses it: Authorize with an
API key once, then "Try it out" on a management endpoint."""

import pytest

from tests.browser import chromium_page

pytestmark = pytest.mark.browser


def test_authorize_then_try_it_out_sends_the_key(live_site):
    key = live_site.manage("issue_api_key", "--name", "swagger").stdout.split()[-1]
    with chromium_page() as page:
        page.goto(f"{live_site.base_url}/api/docs/")
        page.click(".swagger-ui .btn.authorize", timeout=15000)
        page.fill(".auth-container input", key)
        page.click(".auth-container .btn.modal-btn.auth")
        page.click(".btn-done")
        # The lock on the management operations is closed now: the key goes with them.
        operation = page.locator("#operations-api-api_links_list")
        operation.locator(".opblock-summary").click()
        operation.locator(".try-out__btn").click()
        operation.locator(".execute").click()
        status = operation.locator(".live-responses-table .response .response-col_status").first
        status.wait_for(timeout=15000)
        assert status.inner_text().strip() == "200"
        assert f"Authorization: Bearer {key}" in operation.locator(".curl-command").inner_text()
        body = operation.locator(".live-responses-table .response-col_description pre").first.inner_text()
        assert '"results"' in body
