"""The OpenAPI schema's own parts: the API key's security scheme, and the
visitor-facing paths (redirect, preview, QR codes), plain Django views for
speed that drf-spectacular does not see."""

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension

API_KEY_SCHEME = "BearerAPIKey"


class APIKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Every endpoint that takes links.authentication.APIKeyAuthentication carries
    this security requirement, so Swagger UI's Authorize sends the key and
    Postman's converter puts it on the requests."""

    target_class = "links.authentication.APIKeyAuthentication"
    name = API_KEY_SCHEME

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `manage.py issue_api_key` (shown once), or the admin's API keys",
        }


def key_first_on_create(result) -> None:
    """POST / takes a key or none. The key goes first: clients that pick the first
    requirement (Postman's converter) then send it; anonymous stays allowed
    unless SHORTENER_REQUIRE_API_KEY is on."""
    operation = result.get("paths", {}).get("/", {}).get("post")
    if operation is None:
        return
    keyed = {API_KEY_SCHEME: []}
    operation["security"] = [keyed] if settings.REQUIRE_API_KEY_FOR_CREATE else [keyed, {}]


ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
# The README's example alias: Swagger UI and Postman fill it in for {slug}.
SLUG_EXAMPLE = "launch"
SLUG = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}, "example": SLUG_EXAMPLE}


def example_slugs(result) -> None:
    """The management paths' {slug} (drf-spectacular's) gets the same example."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "slug":
                    parameter.setdefault("example", SLUG_EXAMPLE)


def add_visitor_paths(result, generator, request, public):
    key_first_on_create(result)
    example_slugs(result)
    if request is not None:
        # The site's own address, so Swagger UI and imported Postman collections
        # (whose baseUrl comes from here) call this site, not "/".
        base = settings.PUBLIC_BASE_URL or f"{request.scheme}://{request.get_host()}"
        result["servers"] = [{"url": base}]
    paths = result.setdefault("paths", {})
    paths["/{slug}"] = {
        "get": {
            "operationId": "follow_link",
            "summary": "Follow a short link",
            "tags": ["visitors"],
            "parameters": [SLUG],
            "security": [{}],
            "responses": {
                "308": {
                    "description": "Redirect to the original URL",
                    "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}},
                },
                "404": {"description": "Unknown or disabled link", "content": ERROR},
                "410": {"description": "Expired, or its click limit reached", "content": ERROR},
            },
        }
    }
    paths["/{slug}+"] = {
        "get": {
            "operationId": "preview_link",
            "summary": "Preview page: where the link goes",
            "tags": ["visitors"],
            "parameters": [SLUG],
            "security": [{}],
            "responses": {
                "200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
                "404": {"description": "Unknown or disabled link", "content": ERROR},
            },
        }
    }
    for image_format, media_type in (("svg", "image/svg+xml"), ("png", "image/png")):
        paths[f"/{{slug}}/qr.{image_format}"] = {
            "get": {
                "operationId": f"link_qr_{image_format}",
                "summary": f"The short URL as a QR code ({image_format.upper()})",
                "tags": ["visitors"],
                "parameters": [SLUG],
                "security": [{}],
                "responses": {
                    "200": {
                        "description": "QR code",
                        "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "404": {"description": "Unknown link", "content": ERROR},
                },
            }
        }
    return result
