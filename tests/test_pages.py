"""The pages for people in a browser, through Django's full stack: the one
content-negotiation rule, the shorten page and its form, the visitors' error
pages, and the admin made for short links."""

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from links.models import DailyClicks, Link, LinkClicks
from links.negotiation import prefers_html
from links.pages import visitor_error_page
from links.throttling import AnonymousLinkCreationThrottle

pytestmark = pytest.mark.django_db

# What Debian's chromium sends for a page.
BROWSER_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
CURL_ACCEPT = "*/*"
HEALTH_BODY = b'{"status":"ok"}'


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER_ACCEPT, True),
        ("text/html", True),
        ("application/xhtml+xml", True),
        ("application/json;q=0.5, text/html", True),
        ("TEXT/HTML ; q=0.9, */*;q=0.1", True),
        (CURL_ACCEPT, False),
        ("", False),
        (None, False),
        ("application/json", False),
        ("application/json, text/plain, */*", False),  # axios, fetch libraries
        ("text/html;q=0.5, application/json", False),
        ("text/html, application/json", False),  # a tie: the API's answer
        ("text/html;q=0", False),
        ("text/html;q=abc", False),
        ("image/avif,image/webp,*/*;q=0.8", False),  # an <img> asking for a QR code
    ],
)
def test_one_rule_decides_who_prefers_html(accept, html):
    assert prefers_html(accept) is html


@pytest.mark.parametrize("headers", [{}, {"HTTP_ACCEPT": CURL_ACCEPT}, {"HTTP_ACCEPT": "application/json"}])
def test_get_root_stays_the_json_health_answer_for_api_clients(client, headers):
    response = client.get("/", **headers)
    assert response.status_code == 200
    assert response.content == HEALTH_BODY
    assert response["Content-Type"] == "application/json"
    # Caches keep the page and the JSON apart.
    assert "Accept" in response["Vary"]


def test_get_root_shows_the_shorten_page_to_a_browser(client):
    response = client.get("/", HTTP_ACCEPT=BROWSER_ACCEPT)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert "Accept" in response["Vary"]
    page = response.content.decode()
    assert "<title>Shorten a link · Shortener</title>" in page
    assert '<form method="post" action="/links/new"' in page
    assert 'name="csrfmiddlewaretoken"' in page
    for field in ("url", "slug", "expires_at", "max_clicks"):
        assert f'<label for="{field}">' in page and f'id="{field}" name="{field}"' in page
    assert '<script src="/static/links/copy.' in page  # hashed, served by whitenoise
    assert "https://" not in page.split("<main>")[0].replace("https://example.com", "")  # no CDN


def test_the_site_name_is_a_setting(client, settings):
    settings.SITE_NAME = "Tiny Links"
    page = client.get("/", HTTP_ACCEPT=BROWSER_ACCEPT).content.decode()
    assert "<title>Shorten a link · Tiny Links</title>" in page
    assert '<a href="/">Tiny Links</a>' in page


def form_post(client, **fields):
    return client.post("/links/new", fields, HTTP_ACCEPT=BROWSER_ACCEPT)


def test_the_form_creates_the_same_canonical_link_as_post_root(client):
    response = form_post(client, url="https://example.com/from-the-page")
    assert response.status_code == 201
    link = Link.objects.get(original_url="https://example.com/from-the-page")
    page = response.content.decode()
    assert f'<a id="short-url" href="http://testserver/{link.slug}">http://testserver/{link.slug}</a>' in page
    assert f'data-copy="http://testserver/{link.slug}"' in page
    assert f'src="/{link.slug}/qr.svg"' in page and f'href="/{link.slug}+"' in page
    api = client.post("/", {"url": "https://example.com/from-the-page"}, content_type="application/json")
    assert (api.status_code, api.json()["short_slug"]) == (200, link.slug)
    again = form_post(client, url="https://example.com/from-the-page")
    assert again.status_code == 200
    assert "This URL already has a short link" in again.content.decode()
    assert Link.objects.count() == 1


def test_the_form_takes_an_alias_an_expiry_and_a_click_limit(client):
    expires = (timezone.now() + timedelta(days=3)).replace(second=0, microsecond=0)
    response = form_post(
        client,
        url="https://example.com/limited",
        slug="spring-sale",
        expires_at=expires.strftime("%Y-%m-%dT%H:%M"),
        max_clicks="5",
    )
    assert response.status_code == 201, response.content
    link = Link.objects.get(slug="spring-sale")
    assert (link.original_url, link.expires_at, link.max_clicks) == (
        "https://example.com/limited",
        expires,
        5,
    )


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"url": "not a url"}, "url", "Only absolute http:// and https:// URLs"),
        ({"url": ""}, "url", "Invalid URL format"),
        ({"url": "http://localhost:8000/x"}, "url", "points back to this site"),
        ({"url": "https://example.com/a", "slug": "a b"}, "slug", "3 to 64 characters"),
        ({"url": "https://example.com/a", "slug": "admin"}, "slug", "&#x27;admin&#x27; is reserved."),
        ({"url": "https://example.com/a", "max_clicks": "0"}, "max_clicks", "greater than or equal to 1"),
        ({"url": "https://example.com/a", "expires_at": "2001-01-01T00:00"}, "expires_at", "in the future"),
    ],
)
def test_invalid_input_is_shown_in_the_page_by_the_api_rules(client, fields, field, message):
    response = form_post(client, **fields)
    assert response.status_code == 400
    page = response.content.decode()
    error = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', page)
    assert error and message in error.group(1), page
    assert f'aria-describedby="{field}-error"' in page or f'{field}-error"' in page
    assert 'role="alert"' in page
    # What was typed is kept.
    if fields.get("url"):
        assert f'value="{fields["url"]}"' in page
    assert not Link.objects.exists()


def test_an_alias_taken_by_another_url_is_a_conflict_in_the_page(client):
    Link.objects.create(slug="taken", original_url="https://example.com/first")
    response = form_post(client, url="https://example.com/second", slug="taken")
    assert response.status_code == 409
    assert "The alias &#x27;taken&#x27; is already taken by another URL" in response.content.decode()
    assert Link.objects.count() == 1


def test_a_disabled_url_gets_no_new_link_from_the_page(client):
    Link.objects.create(
        slug="banned1", original_url="https://example.com/phish", is_canonical=True, is_active=False
    )
    response = form_post(client, url="https://example.com/phish")
    assert response.status_code == 400
    assert "This URL has been disabled on this site." in response.content.decode()
    assert Link.objects.count() == 1


def test_the_form_needs_its_csrf_token(client):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    refused = strict.post("/links/new", {"url": "https://example.com/csrf"}, HTTP_ACCEPT=BROWSER_ACCEPT)
    assert refused.status_code == 403
    assert not Link.objects.exists()
    page = strict.get("/", HTTP_ACCEPT=BROWSER_ACCEPT).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    accepted = strict.post(
        "/links/new",
        {"url": "https://example.com/csrf", "csrfmiddlewaretoken": token},
        HTTP_ACCEPT=BROWSER_ACCEPT,
    )
    assert accepted.status_code == 201


def test_the_form_and_post_root_share_one_throttle(client, monkeypatch):
    monkeypatch.setattr(AnonymousLinkCreationThrottle, "THROTTLE_RATES", {"anon_create": "2/min"})
    for number in range(2):
        api = client.post("/", {"url": f"https://example.com/t{number}"}, content_type="application/json")
        assert api.status_code == 201
    response = form_post(client, url="https://example.com/third")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Too many links created from this address" in response.content.decode()
    assert Link.objects.count() == 2


def test_other_methods_on_the_form_are_json_405(client):
    response = client.put("/links/new")
    assert response.status_code == 405
    assert response.json() == {"error": "Method not allowed"}


def test_a_private_instance_offers_no_form_to_anonymous_visitors(client, settings):
    settings.REQUIRE_API_KEY_FOR_CREATE = True
    page = client.get("/", HTTP_ACCEPT=BROWSER_ACCEPT).content.decode()
    assert 'id="private-notice"' in page and "<form" not in page
    refused = form_post(client, url="https://example.com/private")
    assert refused.status_code == 403
    assert not Link.objects.exists()
    staff = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert "<form" in client.get("/", HTTP_ACCEPT=BROWSER_ACCEPT).content.decode()
    created = form_post(client, url="https://example.com/private")
    assert created.status_code == 201
    assert 'id="private-notice"' not in created.content.decode()


# --- what a visitor sees for a link that cannot be followed --------------------


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"is_active": False}, 404, "URL not found"),
        ({"expires_at": timezone.now() - timedelta(days=1)}, 410, "This link has expired"),
        ({"max_clicks": 1, "clicks": 1}, 410, "This link has reached its click limit"),
    ],
)
@pytest.mark.parametrize("path", ["/{}", "/{}+", "/{}/qr.svg"])
def test_unavailable_links_are_pages_for_browsers_and_json_for_the_rest(
    client, fields, status, message, path
):
    link_fields = {name: value for name, value in fields.items() if name != "clicks"}
    link = Link.objects.create(slug="gone1", original_url="https://example.com/gone", **link_fields)
    if fields.get("clicks"):
        LinkClicks.objects.create(link=link, clicks=fields["clicks"])
    url = path.format("gone1")
    page = client.get(url, HTTP_ACCEPT=BROWSER_ACCEPT)
    assert page.status_code == status
    assert page.content == visitor_error_page(status=status, message=message).content
    assert f'<p id="message">{message}.</p>' in page.content.decode()
    assert '<a class="continue" href="/">Go to the home page</a>' in page.content.decode()
    for accept in (CURL_ACCEPT, "application/json", None):
        answer = client.get(url, **({"HTTP_ACCEPT": accept} if accept else {}))
        assert answer.status_code == status
        assert answer.content == json.dumps({"error": message}).replace(", ", ",").encode()


def test_an_unknown_slug_is_the_same_page_through_django(client):
    response = client.get("/NoSuch1", HTTP_ACCEPT=BROWSER_ACCEPT)
    assert response.status_code == 404
    assert response.content == visitor_error_page(status=404, message="URL not found").content
    assert client.get("/NoSuch1").json() == {"error": "URL not found"}


# --- the admin ------------------------------------------------------------------


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "correct horse battery")
    client.force_login(user)
    return client


def test_the_admin_is_named_after_the_site(staff_client, settings):
    page = staff_client.get("/admin/").content.decode()
    assert "Shortener administration" in page
    assert "<title>Short links and API keys | Shortener admin</title>" in page


def test_the_list_shows_full_short_urls_with_copy_buttons_and_cut_destinations(staff_client):
    long_url = "https://example.com/" + "x" * 2000
    LinkClicks.objects.create(link=Link.objects.create(slug="long1", original_url=long_url), clicks=7)
    page = staff_client.get("/admin/links/link/").content.decode()
    assert (
        '<span class="truncate short-url" title="http://testserver/long1">http://testserver/<strong>long1</strong>'
        in page
    )
    assert 'data-copy="http://testserver/long1" aria-label="Copy http://testserver/long1"' in page
    assert f'<span class="truncate destination" title="{long_url}">{long_url}</span>' in page
    assert "/static/links/admin." in page and "/static/links/copy." in page
    assert ">never<" in page and ">7<" in page and ">Active<" in page


def test_adding_with_an_alias_says_the_full_short_url(staff_client):
    response = staff_client.post(
        "/admin/links/link/add/",
        {"original_url": "https://example.com/alias", "alias": "my-alias"},
        follow=True,
    )
    assert response.status_code == 200
    link = Link.objects.get(slug="my-alias")
    assert link.original_url == "https://example.com/alias"
    assert "Short link created: http://testserver/my-alias" in response.content.decode()


def test_adding_with_a_taken_or_invalid_alias_shows_the_error(staff_client):
    Link.objects.create(slug="taken2", original_url="https://example.com/other")
    taken = staff_client.post(
        "/admin/links/link/add/", {"original_url": "https://example.com/x", "alias": "taken2"}
    )
    assert taken.status_code == 200
    assert "The alias &#x27;taken2&#x27; is already taken by another URL." in taken.content.decode()
    reserved = staff_client.post(
        "/admin/links/link/add/", {"original_url": "https://example.com/x", "alias": "api"}
    )
    assert "&#x27;api&#x27; is reserved." in reserved.content.decode()
    past = staff_client.post(
        "/admin/links/link/add/",
        {"original_url": "https://example.com/x", "expires_at_0": "2001-01-01", "expires_at_1": "00:00:00"},
    )
    assert "must be in the future" in past.content.decode()
    assert Link.objects.count() == 1


def test_adding_a_url_that_has_its_link_opens_that_link(staff_client, client):
    slug = client.post("/", {"url": "https://example.com/had"}, content_type="application/json").json()[
        "short_slug"
    ]
    link = Link.objects.get(slug=slug)
    response = staff_client.post("/admin/links/link/add/", {"original_url": "https://example.com/had"})
    assert response.status_code == 302
    assert response["Location"] == f"/admin/links/link/{link.pk}/change/"
    page = staff_client.get(response["Location"]).content.decode()
    assert f"This URL already had a link: /{slug} (http://testserver/{slug})" in page
    assert Link.objects.count() == 1


def test_the_change_page_shows_the_short_url_qr_code_and_clicks_per_day(staff_client):
    link = Link.objects.create(slug="chart1", original_url="https://example.com/chart")
    today = timezone.now().date()
    # Today's clicks as the flush keeps them (in the counters row), with a daily row for today too.
    LinkClicks.objects.create(link=link, clicks=12, latest_day=today, latest_day_clicks=3)
    DailyClicks.objects.create(link=link, day=today, count=4)
    DailyClicks.objects.create(link=link, day=today - timedelta(days=2), count=5)
    DailyClicks.objects.create(link=link, day=today - timedelta(days=40), count=100)  # outside the chart
    page = staff_client.get(f"/admin/links/link/{link.pk}/change/").content.decode()
    assert '<a id="short-url" href="http://testserver/chart1">http://testserver/chart1</a>' in page
    assert "<title>QR code of http://testserver/chart1</title>" in page
    bars = re.findall(r'<rect class="bar" [^>]*data-day="([\d-]+)" data-count="(\d+)"', page)
    assert len(bars) == 30
    assert bars[-1] == (today.isoformat(), "7")
    assert bars[-3] == ((today - timedelta(days=2)).isoformat(), "5")
    assert sum(int(count) for _, count in bars) == 12
    assert "12 click(s) in all; the most in one day: 7." in page
