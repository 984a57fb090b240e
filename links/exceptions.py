from rest_framework.views import exception_handler

# What a visitor is told, by Django's views and the redirect fast path alike.
URL_NOT_FOUND = "URL not found"
LINK_EXPIRED = "This link has expired"
CLICK_LIMIT_REACHED = "This link has reached its click limit"


def json_exception_handler(exc, context):
    """DRF's handler, with every error body shaped like the contract's:
    {"error": "<message>"} (headers such as Retry-After are kept)."""
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"error": str(response.data["detail"])}
    return response
