#!/usr/bin/env python3
"""Check a running shortener from outside, as a client would.

    python3 scripts/smoke_test.py http://ec2-1-2-3-4.compute.amazonaws.com

Checks the API contract: health, create (201), create again (200, same slug),
invalid URL (400), redirect (308 to the original URL), unknown slug (404).
Prints PASS or FAIL for each; exits 0 only when every check passes.
Standard library only, so it runs anywhere Python 3 does.
"""

import json
import secrets
import sys
import urllib.error
import urllib.request

TIMEOUT = 15


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


opener = urllib.request.build_opener(NoRedirect)


def call(method: str, url: str, body: dict | None = None) -> tuple[int, dict, dict]:
    """(status, headers, JSON body or {}) of one request; HTTP errors are answers too."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - the operator's own http(s) URL
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        response = opener.open(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as error:
        response = error
    raw = response.read()
    try:
        payload = json.loads(raw) if raw else {}
    except ValueError:
        payload = {"_raw": raw[:200].decode(errors="replace")}
    return response.status, dict(response.headers), payload


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    base = argv[1].rstrip("/")
    target = f"https://example.com/smoke-test/{secrets.token_hex(6)}"
    results: list[bool] = []

    def check(name: str, passed: bool, detail: str = "") -> bool:
        print(f"{'PASS' if passed else 'FAIL'}  {name}{f'  ({detail})' if detail and not passed else ''}")
        results.append(passed)
        return passed

    try:
        status, _, _ = call("GET", base + "/")
        check("GET / answers 200 (health)", status == 200, f"got {status}")

        status, _, created = call("POST", base + "/", {"url": target})
        ok = status == 201 and {"original_url", "short_slug", "short_url"} <= set(created)
        check("POST / with a new URL answers 201 with the link", ok, f"got {status} {created}")
        slug = created.get("short_slug", "")

        status, _, again = call("POST", base + "/", {"url": target})
        check(
            "POST / with the same URL answers 200, same slug",
            status == 200 and again.get("short_slug") == slug,
            f"got {status} {again}",
        )

        status, _, invalid = call("POST", base + "/", {"url": "not a url"})
        check(
            "POST / with an invalid URL answers 400",
            (status, invalid) == (400, {"error": "Invalid URL format"}),
            f"got {status} {invalid}",
        )

        status, headers, _ = call("GET", f"{base}/{slug}")
        location = {k.lower(): v for k, v in headers.items()}.get("location")
        check(
            "GET /<slug> answers 308 to the original URL",
            status == 308 and location == target,
            f"got {status} Location={location}",
        )

        status, _, missing = call("GET", f"{base}/{secrets.token_hex(5)}")
        check(
            "GET /<unknown> answers 404",
            (status, missing) == (404, {"error": "URL not found"}),
            f"got {status} {missing}",
        )
    except (OSError, urllib.error.URLError) as error:
        check(f"the site at {base} answers", False, str(error))

    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if results and all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
