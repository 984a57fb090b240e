import io

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# A link request is a flat object; nothing legitimate nests this deep.
MAX_JSON_DEPTH = 32


def json_depth_exceeds(text: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit` (a scan, so
    that a hostile body never reaches the recursive parser)."""
    depth = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, refusing bodies nested deeper than MAX_JSON_DEPTH
    with a 400 instead of letting Python's parser hit its recursion limit."""

    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read() if stream is not None else b""
        if json_depth_exceeds(body, MAX_JSON_DEPTH):
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels")
        return super().parse(io.BytesIO(body), media_type, parser_context)
