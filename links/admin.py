from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from links.models import Link
from links.serializers import INVALID_URL, http_url_validator, to_ascii_url
from links.services import generate_slug


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


@admin.register(Link)
class LinkAdmin(admin.ModelAdmin):
    form = LinkForm
    list_display = ["slug", "original_url", "created_at"]
    list_filter = [("created_at", admin.DateFieldListFilter)]
    search_fields = ["slug", "original_url"]
    readonly_fields = ["slug", "created_at", "clicks", "last_clicked_at"]
    date_hierarchy = "created_at"

    def save_model(self, request, obj, form, change):
        if not obj.slug:
            obj.slug = generate_slug()
        super().save_model(request, obj, form, change)
