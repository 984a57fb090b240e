from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def site_name() -> str:
    """SHORTENER_SITE_NAME: what the pages and the admin call this site."""
    return settings.SITE_NAME
