"""The visitor-facing paths (redirect, preview, QR codes) in the OpenAPI schema.

They are plain Django views for speed, so drf-spectacular does not see them."""

ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
SLUG = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}


def add_visitor_paths(result, generator, request, public):
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
