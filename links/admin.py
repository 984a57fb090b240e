from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from links.destinations import INVALID_URL, normalize_destination
from links.models import APIKey, Link, LinkStatus
from links.services import (
    issue_api_key,
    refuse_disabled_url,
    revoke_api_key,
    set_links_active,
    shorten_url,
    update_link,
)


class LinkForm(forms.ModelForm):
    # Taken as typed (the API does not trim either); links.destinations decides.
    original_url = forms.CharField(strip=False, widget=forms.URLInput(attrs={"size": 80}))

    class Meta:
        model = Link
        fields = ["original_url", "is_active", "expires_at", "max_clicks"]

    def clean_original_url(self) -> str:
        try:
            url = normalize_destination(self.cleaned_data["original_url"])
            refuse_disabled_url(url=url)
        except ValidationError as refusal:
            raise ValidationError(f"{INVALID_URL}: {' '.join(refusal.messages)}") from None
        return url


class LinkStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return LinkStatus.choices

    def queryset(self, request, queryset):
        return queryset.with_status(self.value()) if self.value() else queryset


@admin.register(Link)
class LinkAdmin(admin.ModelAdmin):
    form = LinkForm
    list_display = [
        "slug",
        "original_url",
        "created_at",
        "clicks",
        "last_clicked_at",
        "status",
        "open_links",
    ]
    list_filter = [LinkStatusFilter, ("created_at", admin.DateFieldListFilter)]
    search_fields = ["slug", "original_url"]
    readonly_fields = ["slug", "status", "created_at", "clicks", "last_clicked_at", "open_links"]
    date_hierarchy = "created_at"
    actions = ["disable_links", "enable_links"]

    def get_readonly_fields(self, request, obj=None):
        # A link keeps its destination: people were given it for that URL.
        return [*self.readonly_fields, "original_url"] if obj is not None else self.readonly_fields

    def get_fields(self, request, obj=None):
        if obj is None:  # Add: what shorten_url takes.
            return ["original_url", "expires_at", "max_clicks"]
        return super().get_fields(request, obj)

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
            expires_at=form.cleaned_data["expires_at"],
            max_clicks=form.cleaned_data["max_clicks"],
        )
        obj.pk = link.pk
        obj.refresh_from_db()
        if not created:
            self.message_user(request, f"This URL already had a link: /{link.slug}", messages.INFO)


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
