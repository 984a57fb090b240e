"""The HTML pages people see, built from the templates in links/templates/links/.

`visitor_error_page` is what a browser gets for a link it cannot follow, from
Django's views and from the redirect fast path alike (which builds its bytes
once, at start). Which clients get a page is `links.negotiation`'s rule.
"""

from django.http import HttpResponse
from django.template.loader import render_to_string

TITLES = {404: "Link not found", 410: "Link no longer available"}


def visitor_error_page(*, status: int, message: str) -> HttpResponse:
    """The page for an unknown or disabled link (404) or one that is gone (410).
    Rendered without a request: the same bytes whichever layer answers."""
    body = render_to_string(
        "links/unavailable.html", {"title": TITLES[status], "message": message, "status": status}
    )
    return HttpResponse(body, status=status)
