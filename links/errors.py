"""Every error this site answers, in one shape, built here only:

    {"error": "<one sentence>"}

with, where it helps, "detail" (why a URL was refused) and "fields" (which
input was wrong). Django's error handlers, DRF's exception handler and the
redirect fast path all build their bodies with `error_response`, so the bytes
are the same whichever layer answered.
"""

import logging
from http import HTTPStatus

import redis
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError
from django.http import JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler

from links.destinations import INVALID_URL
from links.models import LinkStatus

logger = logging.getLogger(__name__)

# What a visitor is told, by Django's views and the redirect fast path alike.
URL_NOT_FOUND = "URL not found"
LINK_EXPIRED = "This link has expired"
CLICK_LIMIT_REACHED = "This link has reached its click limit"
DATABASE_UNAVAILABLE = "The database is unavailable, try again shortly"
BACKEND_UNAVAILABLE = {
    DatabaseError: DATABASE_UNAVAILABLE,
    redis.RedisError: "The rate limiter (Redis) is unavailable, try again shortly",
}

# Why a link that exists cannot be followed: (status, message) by its status.
UNAVAILABLE = {
    # A disabled link is as good as gone for visitors: 404, like an unknown one.
    LinkStatus.DISABLED: (404, URL_NOT_FOUND),
    LinkStatus.EXPIRED: (410, LINK_EXPIRED),
    LinkStatus.EXHAUSTED: (410, CLICK_LIMIT_REACHED),
}

# URL refusals the contract names keep its exact body; for the others (a loop,
# credentials, a disabled URL) the reason is added as "detail".
CONTRACT_URL_ERRORS = {"invalid", "required", "too_long", "null", "blank", "max_length"}


class LinkUnavailable(Exception):
    """The link cannot be followed now (unknown, disabled, expired, used up)."""

    def __init__(self, *, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    @classmethod
    def for_status(cls, status: LinkStatus) -> "LinkUnavailable":
        http_status, message = UNAVAILABLE[status]
        return cls(status=http_status, message=message)


class Conflict(drf_exceptions.APIException):
    status_code = 409
    default_detail = "The request conflicts with an existing link"
    default_code = "conflict"


def error_body(message: str, *, detail: str | None = None, fields: dict | None = None) -> dict:
    body = {"error": message}
    if detail:
        body["detail"] = detail
    if fields:
        body["fields"] = fields
    return body


def error_response(
    message: str, *, status: int, detail: str | None = None, fields: dict | None = None, headers=None
) -> JsonResponse:
    return JsonResponse(error_body(message, detail=detail, fields=fields), status=status, headers=headers)


def _first_message(messages) -> str:
    while isinstance(messages, list | dict):
        messages = next(iter(messages.values() if isinstance(messages, dict) else messages), "")
    return str(messages)


def validation_error_body(exc: drf_exceptions.ValidationError) -> dict:
    """One sentence for the first problem; the whole list under "fields"."""
    fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    codes = exc.get_codes()
    for url_field in ("url", "original_url"):
        if url_field in fields:
            refused = set(_flatten(codes[url_field])) - CONTRACT_URL_ERRORS
            return error_body(INVALID_URL, detail=_first_message(fields[url_field]) if refused else None)
    name, messages = next(iter(fields.items()))
    message = _first_message(messages)
    sentence = message if name == "non_field_errors" else f"{name}: {message}"
    return error_body(sentence, fields=_as_plain(fields))


def _flatten(codes) -> list[str]:
    if isinstance(codes, dict):
        return [code for value in codes.values() for code in _flatten(value)]
    if isinstance(codes, list):
        return [code for value in codes for code in _flatten(value)]
    return [str(codes)]


def _as_plain(fields):
    if isinstance(fields, dict):
        return {key: _as_plain(value) for key, value in fields.items()}
    if isinstance(fields, list):
        return [_as_plain(value) for value in fields]
    return str(fields)


RETRY_AFTER = "5"


def backend_outage(request, exc) -> str | None:
    """What to tell the client when `exc` is an outage of what the app stands on:
    the database (locked past the busy timeout, read-only, a full disk,
    unreachable) or Redis. Answered 503: nothing was committed (the transaction
    rolled back), so the client may retry."""
    for kind, message in BACKEND_UNAVAILABLE.items():
        if isinstance(exc, kind):
            logger.error("%s answering %s: %s", kind.__name__, request.path, exc)
            return message
    return None


class BackendUnavailableMiddleware:
    """The same 503 for Django's own views (the visitor pages, the page form),
    whose exceptions DRF's handler never sees."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        message = backend_outage(request, exception)
        if message is None:
            return None
        return error_response(message, status=503, headers={"Retry-After": RETRY_AFTER})


def api_exception_handler(exc, context):
    """DRF's handler, answering with the same JsonResponse as every other error
    (so the same bytes; headers such as Retry-After, Allow and WWW-Authenticate
    are kept). The model's own validation (full_clean in the services) answers
    400 like a serializer's."""
    if isinstance(exc, DjangoValidationError):
        exc = drf_exceptions.ValidationError(detail=as_serializer_error(exc))
    outage = backend_outage(context["request"], exc)
    if outage is not None:
        return error_response(outage, status=503, headers={"Retry-After": RETRY_AFTER})
    response = exception_handler(exc, context)
    if response is None:
        return None
    headers = {name: value for name, value in response.headers.items() if name.lower() != "content-type"}
    if isinstance(exc, drf_exceptions.ValidationError):
        body = validation_error_body(exc)
    else:
        body = error_body(message_for(response.status_code, str(response.data.get("detail", ""))))
    return JsonResponse(body, status=response.status_code, headers=headers)


# One sentence per status where the site's layers would each word it their own way.
STATUS_MESSAGES = {404: "Not found", 405: "Method not allowed"}


def message_for(status: int, detail: str = "") -> str:
    return STATUS_MESSAGES.get(status) or detail or HTTPStatus(status).phrase


# Django's handlers (shortener_site/urls.py), used for every error that does
# not come from a DRF view, in DEBUG too (see json_not_found's route).


INVALID_HOST = "This site does not answer to that Host"


def json_bad_request(request, exception=None):
    if isinstance(exception, RequestDataTooBig):
        return error_response("Request body too large", status=413)
    if isinstance(exception, DisallowedHost):
        return error_response(INVALID_HOST, status=400)
    return error_response("Bad request", status=400)


def json_permission_denied(request, exception=None):
    return error_response("Permission denied", status=403)


CSRF_FAILED = "CSRF check failed: reload the page and try again"


def json_csrf_failure(request, reason=""):
    return error_response(CSRF_FAILED, status=403)


def json_not_found(request, exception=None, **kwargs):
    return error_response(message_for(404), status=404)


def json_server_error(request):
    return error_response("Internal server error", status=500)
