import pytest
from django.contrib.auth import get_user_model

from links.models import Link, LinkClicks

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "correct horse battery")
    client.force_login(user)
    return client


def test_login_page_renders_with_hashed_css(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"/static/admin/css/base." in response.content  # whitenoise's hashed names


def test_changelist_lists_links_and_searches(staff_client):
    Link.objects.create(slug="AbCdEf1", original_url="https://example.com/one", is_canonical=True)
    Link.objects.create(slug="ZyXwVu2", original_url="https://other.example/two", is_canonical=True)
    page = staff_client.get("/admin/links/link/")
    assert page.status_code == 200
    assert b"AbCdEf1" in page.content and b"ZyXwVu2" in page.content
    found = staff_client.get("/admin/links/link/", {"q": "other.example"})
    assert b"ZyXwVu2" in found.content and b"AbCdEf1" not in found.content
    by_slug = staff_client.get("/admin/links/link/", {"q": "AbCdEf1"})
    assert b"AbCdEf1" in by_slug.content and b"ZyXwVu2" not in by_slug.content


def test_change_page_shows_slug_read_only(staff_client):
    link = Link.objects.create(slug="RoSlug1", original_url="https://example.com/ro", is_canonical=True)
    page = staff_client.get(f"/admin/links/link/{link.pk}/change/")
    assert page.status_code == 200
    assert b'name="slug"' not in page.content
    assert b"RoSlug1" in page.content


def test_adding_a_link_in_the_admin_generates_a_slug(staff_client):
    response = staff_client.post(
        "/admin/links/link/add/", {"original_url": "https://example.com/from-admin", "is_active": "on"}
    )
    assert response.status_code == 302
    link = Link.objects.get(original_url="https://example.com/from-admin")
    assert len(link.slug) == 7


def test_superuser_can_be_created_from_environment(monkeypatch):
    from django.core.management import call_command

    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "envadmin")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long env password")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "envadmin@example.com")
    call_command("createsuperuser", "--noinput", verbosity=0)
    assert get_user_model().objects.get(username="envadmin").check_password("a long env password")


def test_changelist_shows_clicks_status_filters_and_tools(staff_client):
    from datetime import timedelta

    from django.utils import timezone

    active = Link.objects.create(slug="active1", original_url="https://example.com/a")
    LinkClicks.objects.create(link=active, clicks=42)
    Link.objects.create(
        slug="expired1", original_url="https://example.com/e", expires_at=timezone.now() - timedelta(days=1)
    )
    Link.objects.create(slug="disabled1", original_url="https://example.com/d", is_active=False)
    used = Link.objects.create(slug="used1", original_url="https://example.com/u", max_clicks=3)
    LinkClicks.objects.create(link=used, clicks=3)
    page = staff_client.get("/admin/links/link/").content.decode()
    assert "42" in page
    assert 'href="/active1+"' in page and 'href="/active1/qr.svg"' in page
    slugs = {"active1", "expired1", "disabled1", "used1"}
    for status, expected in (
        ("active", "active1"),
        ("expired", "expired1"),
        ("disabled", "disabled1"),
        ("exhausted", "used1"),
    ):
        filtered = staff_client.get("/admin/links/link/", {"status": status}).content.decode()
        others = slugs - {expected}
        assert f">{expected}<" in filtered
        assert not any(f">{other}<" in filtered for other in others), status


def test_disable_and_enable_actions(staff_client):
    link = Link.objects.create(slug="toggle1", original_url="https://example.com/t")
    staff_client.post("/admin/links/link/", {"action": "disable_links", "_selected_action": [link.pk]})
    link.refresh_from_db()
    assert link.is_active is False
    staff_client.post("/admin/links/link/", {"action": "enable_links", "_selected_action": [link.pk]})
    link.refresh_from_db()
    assert link.is_active is True


def test_api_keys_are_created_and_revoked_in_the_admin(staff_client):
    from links.models import APIKey

    response = staff_client.post("/admin/links/apikey/add/", {"name": "from admin"}, follow=True)
    assert response.status_code == 200
    key = APIKey.objects.get(name="from admin")
    message = next(str(m) for m in response.context["messages"])
    plain = message.split(": ", 1)[1].split(" ")[0]
    assert plain.startswith(key.prefix)
    assert staff_client.get("/api/links/", HTTP_AUTHORIZATION=f"Bearer {plain}").status_code == 200
    staff_client.post("/admin/links/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk]})
    assert staff_client.get("/api/links/", HTTP_AUTHORIZATION=f"Bearer {plain}").status_code == 401


def test_adding_a_url_that_has_its_link_returns_that_link(staff_client, client):
    first = client.post("/", {"url": "https://example.com/once"}, content_type="application/json").json()
    response = staff_client.post(
        "/admin/links/link/add/", {"original_url": "https://example.com/once"}, follow=True
    )
    assert response.status_code == 200
    assert Link.objects.filter(original_url="https://example.com/once").count() == 1
    assert f"This URL already had a link: /{first['short_slug']}" in response.content.decode()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (" https://example.com/space", "Only absolute http:// and https:// URLs"),
        ("https://example.com:99999/", "Only absolute http:// and https:// URLs"),
        ("https://user:pw@example.com/", "user name or password"),
        ("http://localhost:8000/x", "points back to this site"),
        ("https://example.com/" + "p" * 2100, "at most 2048 characters"),
    ],
)
def test_the_admin_applies_the_api_url_rule(staff_client, url, reason):
    response = staff_client.post("/admin/links/link/add/", {"original_url": url})
    assert response.status_code == 200  # the form again, with the error
    assert reason in response.content.decode()
    assert not Link.objects.exists()


def test_the_admin_refuses_limits_on_a_canonical_link(staff_client, client):
    slug = client.post("/", {"url": "https://example.com/canon"}, content_type="application/json").json()[
        "short_slug"
    ]
    link = Link.objects.get(slug=slug)
    response = staff_client.post(
        f"/admin/links/link/{link.pk}/change/", {"is_active": "on", "max_clicks": "5"}
    )
    assert response.status_code == 200
    assert "shared link of its URL" in response.content.decode()
    link.refresh_from_db()
    assert link.max_clicks is None


def test_status_column_and_filter_agree_with_the_model():
    from datetime import timedelta

    from django.utils import timezone

    from links.models import LinkStatus

    past, future = timezone.now() - timedelta(hours=1), timezone.now() + timedelta(hours=1)
    number = 0
    for is_active in (True, False):
        for expires_at in (None, past, future):
            for max_clicks, clicks in ((None, 0), (2, 1), (2, 2)):
                number += 1
                link = Link.objects.create(
                    slug=f"combo{number}",
                    original_url=f"https://example.com/{number}",
                    is_active=is_active,
                    expires_at=expires_at,
                    max_clicks=max_clicks,
                )
                if clicks:  # never clicked: no counters row (models.LinkClicks)
                    LinkClicks.objects.create(link=link, clicks=clicks)
    for link in Link.objects.all():
        assert Link.objects.with_status(link.status).filter(pk=link.pk).exists(), link.slug
        for other in set(LinkStatus) - {link.status}:
            assert not Link.objects.with_status(other).filter(pk=link.pk).exists(), (link.slug, other)
    assert set(Link.objects.followable()) == {link for link in Link.objects.all() if link.status == "active"}
