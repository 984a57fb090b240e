"""The API contract, request by request, through Django's full stack."""

import json
import re

import pytest

from links.models import Link
from links.slugs import RESERVED_SLUGS, generate_slug

pytestmark = pytest.mark.django_db

INVALID = {"error": "Invalid URL format"}


def create(client, payload, **extra):
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return client.post("/", body, content_type="application/json", **extra)


def test_health_check_answers_200(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_new_url_answers_201_with_the_contract_body(client):
    response = create(client, {"url": "https://example.com/some/page?x=1"})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"original_url", "short_slug", "short_url"}
    assert body["original_url"] == "https://example.com/some/page?x=1"
    assert re.fullmatch(r"[A-Za-z0-9]{7}", body["short_slug"])
    assert body["short_url"] == f"http://testserver/{body['short_slug']}"


def test_same_url_again_answers_200_with_the_same_slug(client):
    first = create(client, {"url": "https://example.com/again"})
    second = create(client, {"url": "https://example.com/again"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json() == second.json()
    assert Link.objects.filter(original_url="https://example.com/again").count() == 1


def test_redirect_answers_308_with_location(client):
    slug = create(client, {"url": "https://example.com/target"}).json()["short_slug"]
    response = client.get(f"/{slug}")
    assert response.status_code == 308
    assert response["Location"] == "https://example.com/target"
    assert response["Cache-Control"] == "no-store"


def test_head_redirects_too(client):
    slug = create(client, {"url": "https://example.com/head"}).json()["short_slug"]
    response = client.head(f"/{slug}")
    assert response.status_code == 308
    assert response["Location"] == "https://example.com/head"


@pytest.mark.parametrize("path", ["/nosuch1", "/x", "/has.dot", "/%E2%9C%93"])
def test_unknown_slug_answers_404_json(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": "URL not found"}


def test_slugs_are_case_sensitive(client):
    slug = create(client, {"url": "https://example.com/case"}).json()["short_slug"]
    other_case = slug.swapcase()
    assert client.get(f"/{other_case}").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://example.com/file",
        "mailto:someone@example.com",
        "http://",
        "https:///path-only",
        "example.com",
        "//example.com/x",
        "http://exa mple.com/",
        "https://example.com/a b",
        " https://example.com/",
        "https://example.com/\n",
        "",
        "https://" + "a" * 2100 + ".com/",
        "https://example.com/" + "p" * 2048,
        "http://127.0.0.1:99999/",
        "http://intranet/",
        "http://testserver/loop",
        "https://testserver/abcdefg",
    ],
)
def test_invalid_urls_answer_400_with_the_contract_error(client, url):
    response = create(client, {"url": url})
    assert response.status_code == 400, url
    assert response.json() == INVALID
    assert Link.objects.count() == 0


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"url": None},
        {"url": 42},
        {"url": True},
        {"url": ["https://a.b"]},
        {"url": {"href": "https://a.b"}},
        {"link": "https://example.com"},
    ],
)
def test_missing_or_non_string_url_answers_400(client, payload):
    response = create(client, payload)
    assert response.status_code == 400
    assert response.json() == INVALID


LOOP = {**INVALID, "detail": "The URL points back to this site: a short link to it would loop."}


def test_a_url_on_the_public_base_url_is_a_loop(client, settings):
    settings.PUBLIC_BASE_URL = "https://sho.rt"
    response = create(client, {"url": "https://sho.rt/abc1234"})
    assert (response.status_code, response.json()) == (400, LOOP)


def test_every_port_of_our_host_is_a_loop(client):
    for url in ("http://localhost:8081/page", "http://localhost:8000/page", "https://localhost/"):
        response = create(client, {"url": url}, HTTP_HOST="localhost:8000")
        assert (response.status_code, response.json()) == (400, LOOP), url
    assert Link.objects.count() == 0


@pytest.mark.parametrize("body", ['{"url": ', "not json", '{"url": "https://example.com"'])
def test_malformed_json_answers_400_json(client, body):
    response = create(client, body)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "JSON parse error" in response.json()["error"]


@pytest.mark.parametrize("body", ["[]", '"https://example.com"', "42", "null"])
def test_a_body_that_is_not_an_object_answers_400(client, body):
    response = create(client, body)
    assert response.status_code == 400
    assert "error" in response.json()


def test_wrong_content_type_answers_415_json(client):
    response = client.post("/", "url=https://example.com", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert "error" in response.json()


def test_unsupported_methods_answer_405_json(client):
    assert client.put("/").status_code == 405
    assert "error" in client.put("/").json()
    response = client.post("/abcdefg")
    assert response.status_code == 405
    assert response.json() == {"error": "Method not allowed"}


def test_other_paths_answer_404_json(client):
    response = client.get("/a/b/c")
    assert response.status_code == 404
    assert response.json() == {"error": "Not found"}


def test_internationalized_url_redirects_to_its_ascii_form(client):
    response = create(client, {"url": "https://例え.jp/パス?q=値"})
    assert response.status_code == 201
    body = response.json()
    ascii_url = "https://xn--r8jz45g.jp/%E3%83%91%E3%82%B9?q=%E5%80%A4"
    assert body["original_url"] == ascii_url
    redirect = client.get(f"/{body['short_slug']}")
    assert redirect["Location"] == ascii_url
    assert redirect["Location"].isascii()
    # The same URL, spelled either way, is one link.
    again = create(client, {"url": ascii_url})
    assert (again.status_code, again.json()["short_slug"]) == (200, body["short_slug"])


def test_existing_percent_escapes_are_kept(client):
    response = create(client, {"url": "https://example.com/a%20b?q=%2F&r=é"})
    assert response.json()["original_url"] == "https://example.com/a%20b?q=%2F&r=%C3%A9"


def test_url_at_the_length_limit_is_accepted(client, settings):
    url = "https://example.com/" + "p" * (settings.MAX_URL_LENGTH - len("https://example.com/"))
    assert len(url) == settings.MAX_URL_LENGTH
    assert create(client, {"url": url}).status_code == 201


def test_short_url_uses_public_base_url_when_set(client, settings):
    settings.PUBLIC_BASE_URL = "https://sho.rt"
    body = create(client, {"url": "https://example.com/pub"}).json()
    assert body["short_url"] == f"https://sho.rt/{body['short_slug']}"


def test_short_url_uses_the_host_the_client_called(client, settings):
    settings.ALLOWED_HOSTS = ["links.example.org"]
    body = create(client, {"url": "https://example.com/host"}, HTTP_HOST="links.example.org").json()
    assert body["short_url"] == f"http://links.example.org/{body['short_slug']}"


def test_forwarded_headers_from_an_untrusted_client_are_ignored(client, settings):
    # Trust in X-Forwarded-* is uvicorn's job (--forwarded-allow-ips); Django
    # itself must not believe a client's claims.
    settings.ALLOWED_HOSTS = ["testserver", "evil.example"]
    body = create(
        client,
        {"url": "https://example.com/fwd"},
        HTTP_X_FORWARDED_HOST="evil.example",
        HTTP_X_FORWARDED_PROTO="https",
    ).json()
    assert body["short_url"].startswith("http://testserver/")


def test_generated_slugs_are_base62_and_never_reserved(settings):
    settings.SLUG_LENGTH = 5
    for _ in range(2000):
        slug = generate_slug()
        assert re.fullmatch(r"[A-Za-z0-9]{5}", slug)
        assert slug.lower() not in RESERVED_SLUGS


def test_slug_length_is_configurable(client, settings):
    settings.SLUG_LENGTH = 10
    body = create(client, {"url": "https://example.com/ten"}).json()
    assert len(body["short_slug"]) == 10


def test_reserved_paths_are_not_slugs(client):
    # /admin/ is the admin, never a redirect.
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
