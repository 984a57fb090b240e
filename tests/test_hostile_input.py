"""Hostile input, as an attacker or a careless operator would send it: every
answer is the status the contract names, with a JSON body in the one shape,
and nothing is stored that should not be."""

import asyncio
import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from links.fastpath import DELEGATE, RedirectFastPath
from links.models import Link, LinkClicks
from links.services import shorten_url

pytestmark = pytest.mark.django_db

INVALID = {"error": "Invalid URL format"}
LOOP = {**INVALID, "detail": "The URL points back to this site: a short link to it would loop."}
CREDENTIALS = {**INVALID, "detail": "URLs carrying a user name or password are not accepted."}
NOT_ALLOWED = {"error": "Method not allowed"}


def create(client, payload, **extra):
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return client.post("/", body, content_type="application/json", **extra)


def patch(api, slug, changes):
    return api.patch(f"/api/links/{slug}/", json.dumps(changes), content_type="application/json")


def assert_json_error(response, status: int, body: dict | None = None) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    if body is not None:
        assert response.json() == body
    else:
        assert isinstance(response.json()["error"], str)


# --- credentials in URLs ------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://üser@example.com/x",
        "https://user:pass@example.com/",
        "https://paypal.com@evil.example/",
    ],
)
def test_urls_carrying_credentials_are_refused(client, url):
    assert_json_error(create(client, {"url": url}), 400, CREDENTIALS)
    assert not Link.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_stored_non_ascii_url_never_reaches_a_500(client):
    # A row written before the rule existed, or by raw SQL.
    # bulk_create skips the model's validation, as raw SQL would.
    Link.objects.bulk_create([Link(slug="legacy1", original_url="https://üser@example.com/ä")])
    fast_path = RedirectFastPath.from_settings()
    try:
        assert asyncio.run(fast_path.lookup("legacy1")) is DELEGATE  # Django answers it
    finally:
        fast_path.close()
    response = client.get("/legacy1")
    assert response.status_code == 308
    assert response["Location"] == "https://%C3%BCser@example.com/%C3%A4"


# --- numbers and nesting -------------------------------------------------------


@pytest.mark.parametrize("max_clicks", [2**63, 2**64 + 5, 2**31, 0, -1, 1.5, "many", True, None])
def test_out_of_range_click_limits_are_400_on_create(client, max_clicks):
    response = create(client, {"url": "https://example.com/limit", "max_clicks": max_clicks})
    assert_json_error(response, 400)
    assert response.json()["error"].startswith("max_clicks: ")
    assert list(response.json()["fields"]) == ["max_clicks"]
    assert not Link.objects.exists()


def test_the_largest_click_limit_is_accepted(client):
    assert create(client, {"url": "https://example.com/big", "max_clicks": 2**31 - 1}).status_code == 201


@pytest.mark.parametrize("max_clicks", [2**63, 2**31])
def test_out_of_range_click_limits_are_400_on_patch(api, max_clicks):
    shorten_url(url="https://example.com/patch-limit", slug="patch-limit")
    assert_json_error(patch(api, "patch-limit", {"max_clicks": max_clicks}), 400)
    assert Link.objects.get(slug="patch-limit").max_clicks is None


@pytest.mark.parametrize("depth", [33, 5000, 20000])
def test_deeply_nested_json_is_a_400(client, depth):
    body = '{"url": ' + "[" * depth + "]" * depth + "}"
    response = create(client, body)
    assert_json_error(response, 400, {"error": "JSON parse error - nested deeper than 32 levels"})


def test_brackets_inside_strings_do_not_count_as_nesting(client):
    url = "https://example.com/" + "%5B" * 5 + "?q=" + "[" * 40
    response = create(client, {"url": url, "slug": "brackets"})
    assert response.status_code == 201, response.content


def test_a_body_over_the_limit_is_a_json_413(client):
    response = create(client, {"url": "https://example.com/" + "a" * 70_000})
    assert_json_error(response, 413, {"error": "Request body too large"})


# --- slugs ---------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["abc\n", " abc", "abc ", "ab\tc", "abc\x00", "ab/c", "ab", "é" * 4])
def test_custom_slugs_are_never_trimmed_or_bent(client, slug):
    response = create(client, {"url": "https://example.com/slug", "slug": slug})
    assert_json_error(response, 400)
    assert response.json()["error"].startswith("slug: ")
    assert not Link.objects.exists()


# --- loops -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8000/x",
        "http://LOCALHOST:8000/x",
        "http://testserver.example.:8000/x",
        "http://localhost/x",
        "http://127.0.0.1:8000/x",
        "http://127.0.0.1:9999/x",
        "http://127.9.9.9/x",
        "http://[::1]:8000/x",
        "http://0.0.0.0:8000/x",
        "http://[::ffff:127.0.0.1]:8000/x",
        "http://[::]/x",
        "http://app.localhost/x",
        "http://testserver.example/x",
    ],
)
def test_every_address_of_this_site_is_a_loop(client, settings, url):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver.example"]
    response = create(client, {"url": url}, HTTP_HOST="127.0.0.1:8000")
    assert_json_error(response, 400, LOOP)
    assert not Link.objects.exists()


def test_subdomains_of_a_wildcard_allowed_host_are_loops(client, settings):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, ".sho.rt"]
    for url in ("https://sho.rt/a", "https://www.sho.rt/a", "https://SHO.RT./a"):
        assert_json_error(create(client, {"url": url}), 400, LOOP)
    assert create(client, {"url": "https://notsho.rt/a"}).status_code == 201


def test_a_chain_back_through_another_short_link_cannot_be_made(client, settings):
    settings.PUBLIC_BASE_URL = "https://sho.rt"
    first = create(client, {"url": "https://example.com/a"}).json()
    # B -> A would make A -> ... -> B -> A possible: any link into this site is refused.
    assert_json_error(create(client, {"url": first["short_url"]}), 400, LOOP)
    assert_json_error(create(client, {"url": "http://sho.rt:8080/" + first["short_slug"]}), 400, LOOP)
    assert Link.objects.count() == 1


def test_the_model_refuses_what_the_api_refuses():
    for url in (
        "javascript:alert(1)",
        "https://user:pw@example.com/",
        "http://localhost/x",
        " https://a.example/",
    ):
        with pytest.raises(ValidationError):
            Link(slug="modelrule", original_url=url).full_clean()


# --- hosts ---------------------------------------------------------------------------


def test_a_host_outside_allowed_hosts_is_a_json_400(client):
    shorten_url(url="https://example.com/host", slug="hosted")
    for path in ("/", "/hosted", "/hosted+", "/hosted/qr.png", "/api/links/"):
        response = client.get(path, HTTP_HOST="evil.example")
        assert_json_error(response, 400, {"error": "This site does not answer to that Host"})
    response = create(client, {"url": "https://example.com/spoof"}, HTTP_HOST="evil.example")
    assert_json_error(response, 400, {"error": "This site does not answer to that Host"})
    assert Link.objects.count() == 1


def test_qr_codes_answer_exactly_what_the_redirect_answers(client, api):
    shorten_url(url="https://example.com/qr", slug="qr-state")
    png = client.get("/qr-state/qr.png")
    assert (png.status_code, png["Content-Type"]) == (200, "image/png")
    assert png["Cache-Control"] == "no-store"
    patch(api, "qr-state", {"is_active": False})
    for path in ("/qr-state", "/qr-state/qr.png", "/qr-state/qr.svg", "/qr-state+"):
        assert_json_error(client.get(path), 404, {"error": "URL not found"})
    patch(api, "qr-state", {"is_active": True})
    Link.objects.filter(slug="qr-state").update(expires_at=timezone.now() - timedelta(seconds=1))
    for path in ("/qr-state", "/qr-state/qr.png", "/qr-state+"):
        assert_json_error(client.get(path), 410, {"error": "This link has expired"})


# --- methods and error shapes ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/some-slug+", "/some-slug/qr.png", "/some-slug/qr.svg", "/some-slug"])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "trace"])
def test_writes_and_trace_on_visitor_paths_are_json_405(client, path, method):
    response = client.generic(method.upper(), path, b'{"x": 1}', content_type="application/json")
    assert_json_error(response, 405, NOT_ALLOWED)
    assert "GET" in response["Allow"]


@pytest.mark.parametrize("path", ["/", "/api/links/", "/some-slug", "/api/schema/"])
def test_unknown_methods_are_json_405(api, path):
    assert_json_error(api.generic("FOO", path), 405)


def test_the_api_docs_and_schema_answer_errors_in_json(client):
    assert_json_error(client.options("/api/docs/"), 405, NOT_ALLOWED)
    assert_json_error(client.post("/api/schema/"), 405, NOT_ALLOWED)
    assert_json_error(client.get("/api/schema/?format=xyz"), 404, {"error": "Not found"})
    assert client.get("/api/schema/?format=json").status_code == 200
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.parametrize("path", ["/a/b/c", "/admin.php/x", "/api/nothing/", "/%00/x"])
def test_unknown_paths_are_json_404(client, path):
    assert_json_error(client.get(path), 404, {"error": "Not found"})


def test_unknown_paths_are_json_404_in_debug_too(client, settings):
    settings.DEBUG = True
    assert_json_error(client.get("/a/b/c"), 404, {"error": "Not found"})


def test_a_failed_csrf_check_is_json_403(client):
    from django.contrib.auth.models import User

    User.objects.create_superuser("ops", "ops@example.com", "pw-for-tests-only")
    client.login(username="ops", password="pw-for-tests-only")
    client.handler.enforce_csrf_checks = True
    response = client.post("/admin/links/link/add/", {"original_url": "https://example.com/"})
    assert_json_error(response, 403, {"error": "CSRF check failed: reload the page and try again"})


def test_management_api_validation_errors_name_the_fields(api):
    shorten_url(url="https://example.com/fields", slug="fields")
    response = patch(api, "fields", {"expires_at": "not a date", "max_clicks": "x"})
    assert_json_error(response, 400)
    assert set(response.json()["fields"]) == {"expires_at", "max_clicks"}
    assert response.json()["error"].split(":")[0] in response.json()["fields"]


def test_a_bad_ordering_is_ignored_not_an_error(api):
    assert api.get("/api/links/?ordering=original_url;drop").status_code == 200


# --- canonical links and limits ----------------------------------------------------------


def test_a_canonical_link_refuses_limits_and_stays_followable(client, api):
    slug = create(client, {"url": "https://example.com/shared"}).json()["short_slug"]
    later = (timezone.now() + timedelta(days=1)).isoformat()
    for changes in ({"max_clicks": 1}, {"expires_at": later}):
        response = patch(api, slug, changes)
        assert_json_error(response, 400)
        assert "shared link of its URL" in response.json()["error"]
    assert client.get(f"/{slug}").status_code == 308
    again = create(client, {"url": "https://example.com/shared"})
    assert (again.status_code, again.json()["short_slug"]) == (200, slug)


def test_patch_refuses_an_expiry_in_the_past(api):
    shorten_url(url="https://example.com/past", slug="past-expiry")
    earlier = (timezone.now() - timedelta(minutes=1)).isoformat()
    response = patch(api, "past-expiry", {"expires_at": earlier})
    assert_json_error(
        response,
        400,
        {"error": "expires_at: must be in the future", "fields": {"expires_at": ["must be in the future"]}},
    )
    assert Link.objects.get(slug="past-expiry").expires_at is None


def test_a_disabled_url_gets_no_new_link(client, api):
    slug = create(client, {"url": "https://phish.example/login"}).json()["short_slug"]
    patch(api, slug, {"is_active": False})
    disabled = {**INVALID, "detail": "This URL has been disabled on this site."}
    assert_json_error(create(client, {"url": "https://phish.example/login"}), 400, disabled)
    assert_json_error(create(client, {"url": "https://phish.example/login", "slug": "again1"}), 400, disabled)
    assert Link.objects.count() == 1


def test_a_bulk_update_is_seen_by_the_status_rule(client):
    link, _ = shorten_url(url="https://example.com/raw", slug="raw-write")
    Link.objects.filter(slug="raw-write").update(max_clicks=1)
    LinkClicks.objects.update_or_create(link=link, defaults={"clicks": 1})  # the counters (models.LinkClicks)
    assert_json_error(client.get("/raw-write"), 410, {"error": "This link has reached its click limit"})


@pytest.mark.parametrize("slug", ["healthz", "Admin", "links", "a b\n", "ab"])
def test_the_services_refuse_reserved_and_bent_slugs_whoever_calls_them(slug):
    with pytest.raises(ValidationError):
        shorten_url(url="https://evil.example/", slug=slug)
    assert not Link.objects.exists()


def test_the_site_s_own_ip_addresses_are_loops_in_any_spelling(client, settings):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "203.0.113.5", "[2001:db8::1]"]
    for url in (
        "http://203.0.113.5/x",
        "http://[::ffff:203.0.113.5]/x",
        "http://[::ffff:cb00:7105]/x",
        "http://[2001:db8::1]:8080/x",
        "http://[2001:0db8:0:0::1]/x",
    ):
        assert_json_error(create(client, {"url": url}), 400, LOOP)
    assert create(client, {"url": "http://203.0.113.6/x"}).status_code == 201


def test_every_layer_writes_the_same_bytes_for_the_same_error(api):
    """DRF's views, Django's views, the wrapped schema views and Django's
    handlers all answer through links.errors.error_response."""
    not_allowed = [
        api.generic("FOO", "/"),  # DRF
        api.generic("FOO", "/api/links/"),  # DRF, with a key
        api.post("/some-slug+"),  # a Django visitor view
        api.post("/api/schema/"),  # drf-spectacular, wrapped
    ]
    assert {response.content for response in not_allowed} == {b'{"error": "Method not allowed"}'}
    not_found = [api.get("/api/links/no-such-slug/"), api.get("/a/b/c"), api.get("/api/schema/?format=xyz")]
    assert {response.content for response in not_found} == {b'{"error": "Not found"}'}
    invalid = api.post("/", '{"url": "ftp://x"}', content_type="application/json")
    assert invalid.content == b'{"error": "Invalid URL format"}'
