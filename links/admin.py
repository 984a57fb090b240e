from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone
from django.utils.html import format_html

from links.models import APIKey, Link
from links.serializers import INVALID_URL, http_url_validator, to_ascii_url
from links.services import generate_slug, issue_api_key, revoke_api_key, update_link


class LinkForm(forms.ModelForm):
    class Meta:
        model = Link
        fields = ["original_url", "is_active", "expires_at", "max_clicks"]
        widgets = {"original_url": forms.URLInput(attrs={"size": 80})}

    def clean_original_url(self) -> str:
        url = self.cleaned_data["original_url"].strip()
        try:
            http_url_validator(url)
        except ValidationError:
            raise ValidationError(INVALID_URL) from None
        return to_ascii_url(url)


class LinkStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("expired", "Expired"), ("disabled", "Disabled")]

    def queryset(self, request, queryset):
        now = timezone.now()
        expired = Q(expires_at__lte=now)
        if self.value() == "active":
            return queryset.filter(is_active=True).exclude(expired)
        if self.value() == "expired":
            return queryset.filter(expired)
        if self.value() == "disabled":
            return queryset.filter(is_active=False)
        return queryset


@admin.register(Link)
class LinkAdmin(admin.ModelAdmin):
    form = LinkForm
    list_display = [
        "slug",
        "original_url",
        "created_at",
        "clicks",
        "last_clicked_at",
        "is_active",
        "open_links",
    ]
    list_filter = [LinkStatusFilter, ("created_at", admin.DateFieldListFilter)]
    search_fields = ["slug", "original_url"]
    readonly_fields = ["slug", "created_at", "clicks", "last_clicked_at", "open_links"]
    date_hierarchy = "created_at"
    actions = ["disable_links", "enable_links"]

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
        self._set_active(request, queryset, active=False)

    @admin.action(description="Enable selected links")
    def enable_links(self, request, queryset):
        self._set_active(request, queryset, active=True)

    def _set_active(self, request, queryset, *, active: bool) -> None:
        for link in queryset:
            update_link(link=link, is_active=active)
        self.message_user(request, f"{queryset.count()} link(s) {'enabled' if active else 'disabled'}.")

    def save_model(self, request, obj, form, change):
        if not obj.slug:
            obj.slug = generate_slug()
        super().save_model(request, obj, form, change)


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
