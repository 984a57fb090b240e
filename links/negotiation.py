"""The one content-negotiation rule: does this client prefer an HTML page to JSON?

Used by Django's views and by the redirect fast path (on its not-found answer
only), so this module imports nothing heavy.

A client prefers HTML when the Accept header gives `text/html` (or XHTML) a
higher quality than JSON. Browsers send `text/html,...,*/*;q=0.8`: HTML wins.
curl's `*/*`, an absent header and `application/json` give both the same
quality or none to HTML: JSON, the API's answer, wins every tie.
"""

from functools import lru_cache

HTML_TYPES = ("text/html", "application/xhtml+xml")
JSON_TYPE = "application/json"


def _quality(ranges: list[tuple[str, float]], media_type: str) -> float:
    """The quality of `media_type` under the most specific range that matches it
    (RFC 9110 section 12.5.1): "type/subtype", then "type/*", then "*/*"."""
    main_type = media_type.split("/", 1)[0]
    best_specificity, quality = -1, 0.0
    for media_range, range_quality in ranges:
        if media_range == media_type:
            specificity = 2
        elif media_range == f"{main_type}/*":
            specificity = 1
        elif media_range == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best_specificity:
            best_specificity, quality = specificity, range_quality
    return quality


def _parse(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for item in accept.split(","):
        media_range, *parameters = item.split(";")
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    quality = 0.0  # a malformed weight counts as "not acceptable"
        ranges.append((media_range.strip().lower(), quality))
    return ranges


# Clients send few distinct Accept headers (each browser one or two); a
# bounded cache makes repeats free and cannot grow with hostile input.
@lru_cache(maxsize=256)
def prefers_html(accept: str | None) -> bool:
    """True when the Accept header rates HTML above JSON."""
    if not accept:
        return False
    ranges = _parse(accept[:2000])
    html = max(_quality(ranges, media_type) for media_type in HTML_TYPES)
    return html > 0 and html > _quality(ranges, JSON_TYPE)
