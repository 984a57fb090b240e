from datetime import timedelta

import segno
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from links.models import APIKey, Link, LinkStatus
from links.selectors import build_short_url
from links.serializers import CreateLinkSerializer
from links.services import (
    issue_api_key,
    refuse_disabled_url,
    revoke_api_key,
    set_links_active,
    shorten_url,
    update_link,
)

admin.site.site_header = f"{settings.SITE_NAME} administration"
admin.site.site_title = f"{settings.SITE_NAME} admin"
admin.site.index_title = "Short links and API keys"
# Two models only: the breadcrumbs are enough, and the list gets the width.
admin.site.enable_nav_sidebar = False

CHART_DAYS = 30


class LinkForm(forms.ModelForm):
    # Taken as typed (the API does not trim either); links.destinations decides.
    original_url = forms.CharField(strip=False, widget=forms.URLInput(attrs={"size": 80}))
    # Add only (a link keeps its slug): what POST / calls "slug" (a name the
    # model form cannot take, the model's slug not being editable).
    alias = forms.CharField(
        label="Custom alias",
        required=False,
        strip=False,
        help_text="Optional: 3 to 64 letters, digits, '_' or '-'. Empty: a random slug.",
    )

    class Meta:
        model = Link
        fields = ["original_url", "is_active", "expires_at", "max_clicks"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The admin's date and time boxes share one label; each gets its own name.
        if "expires_at" in self.fields:
            date, time = self.fields["expires_at"].widget.widgets
            date.attrs["aria-label"] = "Expires at: date"
            time.attrs["aria-label"] = "Expires at: time"

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is None:
            self._check_as_the_api_would(cleaned)
        return cleaned

    def _check_as_the_api_would(self, cleaned: dict) -> None:
        """A new link is checked by CreateLinkSerializer, POST /'s own rules
        (URL, alias, future expiry, limit), with each problem on its field."""
        if "original_url" not in cleaned:
            return
        values = {
            "url": cleaned["original_url"],
            "slug": cleaned.get("alias") or None,
            "expires_at": cleaned.get("expires_at"),
            "max_clicks": cleaned.get("max_clicks"),
        }
        serializer = CreateLinkSerializer(data={name: v for name, v in values.items() if v is not None})
        if not serializer.is_valid():
            for name, problems in serializer.errors.items():
                field = {"url": "original_url", "slug": "alias"}.get(name, name)
                self.add_error(field if field in self.fields else None, [str(p) for p in problems])
            return
        url = serializer.validated_data["url"]
        cleaned["original_url"] = url
        try:
            refuse_disabled_url(url=url)
        except ValidationError as refusal:
            self.add_error("original_url", refusal.messages)
        slug = serializer.validated_data.get("slug")
        # Checked here so the form shows it; a race with another creator in
        # between is still refused by the database (SlugTaken).
        if slug and Link.objects.filter(slug=slug).exclude(original_url=url).exists():
            self.add_error("alias", f"The alias '{slug}' is already taken by another URL.")


class LinkStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return LinkStatus.choices

    def queryset(self, request, queryset):
        return queryset.with_status(self.value()) if self.value() else queryset


def copy_button(text: str) -> str:
    """A button that copies `text` (links/static/links/copy.js shows it; hidden without JavaScript)."""
    return format_html(
        '<button type="button" class="copy-button" data-copy="{0}" aria-label="Copy {0}" hidden>'
        "Copy</button>",
        text,
    )


def clicks_chart(*, link: Link, today) -> str:
    """Clicks per UTC day for the last CHART_DAYS days as an SVG bar chart,
    drawn here (no JavaScript), with the numbers as a table beside it."""
    first = today - timedelta(days=CHART_DAYS - 1)
    counts = {day: count for day, count in link.clicks_per_day(since=first) if day <= today}
    days = [first + timedelta(days=n) for n in range(CHART_DAYS)]
    top = max([*counts.values(), 1])
    bar, gap, height, left, bottom = 16, 4, 120, 40, 24
    width = left + CHART_DAYS * (bar + gap)
    bars = []
    for index, day in enumerate(days):
        count = counts.get(day, 0)
        bar_height = round(height * count / top)
        x = left + index * (bar + gap)
        bars.append((x, height - bar_height, bar, bar_height, day, count, day, count))
    bars = format_html_join(
        "",
        '<rect class="bar" x="{}" y="{}" width="{}" height="{}" data-day="{}" data-count="{}">'
        "<title>{}: {} click(s)</title></rect>",
        bars,
    )
    total = sum(counts.values())
    svg = format_html(
        '<svg class="clicks-chart" role="img" aria-labelledby="chart-title chart-desc" '
        'viewBox="0 0 {w} {h}" width="{w}" height="{h}">'
        '<title id="chart-title">Clicks per day, last {n} days (UTC)</title>'
        '<desc id="chart-desc">{total} click(s) in all; the most in one day: {top}.</desc>'
        '<line x1="{left}" y1="{height}" x2="{w}" y2="{height}" class="axis"></line>'
        '<text x="{lx}" y="10" text-anchor="end" class="label">{top}</text>'
        '<text x="{lx}" y="{height}" text-anchor="end" class="label">0</text>'
        "{bars}"
        '<text x="{left}" y="{ty}" class="label">{first}</text>'
        '<text x="{w}" y="{ty}" text-anchor="end" class="label">{last}</text>'
        "</svg>",
        w=width,
        h=height + bottom,
        n=CHART_DAYS,
        total=total,
        top=max(counts.values(), default=0),
        left=left,
        lx=left - 6,
        height=height,
        ty=height + 18,
        bars=bars,
        first=first.strftime("%d %b"),
        last=today.strftime("%d %b"),
    )
    rows = format_html_join(
        "",
        "<tr><th scope='row'>{}</th><td>{}</td></tr>",
        ((day.isoformat(), counts.get(day, 0)) for day in days),
    )
    table = format_html(
        "<details><summary>As a table</summary><table class='clicks-table'>"
        "<thead><tr><th scope='col'>Day (UTC)</th><th scope='col'>Clicks</th></tr></thead>"
        "<tbody>{}</tbody></table></details>",
        rows,
    )
    return format_html("{}{}", svg, table)


@admin.register(Link)
class LinkAdmin(admin.ModelAdmin):
    form = LinkForm
    list_filter = [LinkStatusFilter, ("created_at", admin.DateFieldListFilter)]
    search_fields = ["slug", "original_url"]
    date_hierarchy = "created_at"
    actions = ["disable_links", "enable_links"]
    list_per_page = 50

    class Media:
        css = {"all": ["links/admin.css"]}
        js = ["links/copy.js"]

    def get_list_display(self, request):
        # The short URL needs the request (its host) when PUBLIC_BASE_URL is unset.
        @admin.display(description="short URL", ordering="slug")
        def short_url(link: Link) -> str:
            # The first column: the link to the link's page (the copy button,
            # which cannot sit inside a link, is in the last one).
            url = build_short_url(slug=link.slug, request=request)
            base = url[: -len(link.slug)]
            return format_html(
                '<span class="truncate short-url" title="{}">{}<strong>{}</strong></span>',
                url,
                base,
                link.slug,
            )

        @admin.display(description="copy · preview · QR")
        def tools(link: Link) -> str:
            return format_html(
                "{} {}", copy_button(build_short_url(slug=link.slug, request=request)), self.open_links(link)
            )

        return [short_url, "destination", "clicks", "last_click", "status", tools]

    @admin.display(description="destination", ordering="original_url")
    def destination(self, link: Link) -> str:
        # One line, cut to the column; the whole URL on hover and in the title.
        return format_html('<span class="truncate destination" title="{0}">{0}</span>', link.original_url)

    @admin.display(description="clicks", ordering="clicks")
    def clicks(self, link: Link) -> int:
        # A property of Link over its counters (models.LinkClicks); sortable
        # through LinkQuerySet.order_by.
        return link.clicks

    @admin.display(description="last click", ordering="last_clicked_at")
    def last_click(self, link: Link) -> str:
        if link.last_clicked_at is None:
            return "never"
        moment = timezone.localtime(link.last_clicked_at)
        return format_html(
            '<time datetime="{}">{}</time>', moment.isoformat(), moment.strftime("%Y-%m-%d %H:%M")
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # A link keeps its slug and destination: people were given it for that URL.
        return ["slug", "original_url", "status", "created_at", "clicks", "last_clicked_at", "open_links"]

    def get_fields(self, request, obj=None):
        if obj is None:  # Add: what POST / takes.
            return ["original_url", "alias", "expires_at", "max_clicks"]
        return [
            "slug",
            "original_url",
            "status",
            "is_active",
            "expires_at",
            "max_clicks",
            "clicks",
            "last_clicked_at",
            "created_at",
            "open_links",
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        link = self.get_object(request, object_id)
        if link is not None:
            short_url = build_short_url(slug=link.slug, request=request)
            qr = segno.make(short_url, error="m").svg_inline(
                scale=4, border=2, title=f"QR code of {short_url}"
            )
            extra_context = {
                **(extra_context or {}),
                "short_url": short_url,
                "copy_button": copy_button(short_url),
                # segno's SVG of our URL, which it escapes in the title.
                "qr_svg": mark_safe(qr),  # noqa: S308
                "clicks_chart": clicks_chart(link=link, today=timezone.now().date()),
                "chart_days": CHART_DAYS,
            }
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="status")
    def status(self, link: Link) -> str:
        return link.status.label if link.pk else "-"

    @admin.display(description="preview / QR")
    def open_links(self, link: Link) -> str:
        if not link.slug:
            return "-"
        return format_html(
            '<a href="/{0}+" target="_blank">preview</a> · <a href="/{0}/qr.svg" target="_blank">QR</a>',
            link.slug,
        )

    @admin.action(description="Disable selected links")
    def disable_links(self, request, queryset):
        count = set_links_active(links=queryset, active=False)
        self.message_user(request, f"{count} link(s) disabled.")

    @admin.action(description="Enable selected links")
    def enable_links(self, request, queryset):
        count = set_links_active(links=queryset, active=True)
        self.message_user(request, f"{count} link(s) enabled.")

    def save_model(self, request, obj, form, change):
        if change:
            update_link(link=obj, **{name: form.cleaned_data[name] for name in form.changed_data})
            return
        # Adding goes through the same service as POST /: a URL that has its
        # canonical link gets that link back, not a duplicate.
        link, created = shorten_url(
            url=form.cleaned_data["original_url"],
            slug=form.cleaned_data.get("alias") or None,
            expires_at=form.cleaned_data["expires_at"],
            max_clicks=form.cleaned_data["max_clicks"],
        )
        obj.pk = link.pk
        obj.refresh_from_db()
        obj.was_there_already = not created

    def response_add(self, request, obj, post_url_continue=None):
        """Say the full short URL (what people copy), and open an existing
        link's page rather than pretend a new one was made."""
        short_url = build_short_url(slug=obj.slug, request=request)
        change_url = reverse("admin:links_link_change", args=[obj.pk])
        if getattr(obj, "was_there_already", False):
            self.message_user(
                request,
                f"This URL already had a link: /{obj.slug} ({short_url}); here it is, no duplicate was made.",
                messages.INFO,
            )
            return HttpResponseRedirect(change_url)
        self.message_user(request, f"Short link created: {short_url}", messages.SUCCESS)
        if "_addanother" in request.POST:
            return HttpResponseRedirect(request.path)
        if "_continue" in request.POST:
            return HttpResponseRedirect(change_url)
        return HttpResponseRedirect(reverse("admin:links_link_changelist"))


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "created_at", "revoked_at"]
    fields = ["name", "prefix", "created_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "revoked_at"]
    actions = ["revoke_keys"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        key, plain = issue_api_key(name=obj.name)
        obj.pk = key.pk
        self.message_user(
            request,
            f"API key for '{key.name}': {plain} — copy it now, it is not shown again.",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request, queryset):
        for key in queryset:
            revoke_api_key(key=key)
        self.message_user(request, f"{queryset.count()} key(s) revoked.")
