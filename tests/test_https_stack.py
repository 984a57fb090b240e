"""HTTPS for real, offline: the production stack (docker-compose.prod.yml +
docker-compose.https.yml) with certbot getting its certificate from pebble,
Let's Encrypt's test CA, over http-01 on the stack's own private network
(docker-compose.pebble.yml adds pebble and its fake DNS, nothing else).

Every HTTPS request is verified against pebble's root, for the test's name."""

import io
import json
import re
import socket
import ssl
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar

import httpx
import pytest
import segno

from tests.project import free_port, read_answer
from tests.stack import Stack, require_engine

pytestmark = pytest.mark.stack

DOMAIN = "short.example"
PUBLIC_BASE_URL = f"https://{DOMAIN}"
ACME_NET = "10.77.245"  # the pebble override's fixed test network (docker-compose.pebble.yml)
COMPOSE_FILES = ("docker-compose.prod.yml", "docker-compose.https.yml", "docker-compose.pebble.yml")
ONE_YEAR = 365 * 24 * 3600


@dataclass
class HttpsStack(Stack):
    """The stack with HTTPS and the pebble test override, on its own ports and networks."""

    compose_files: ClassVar[tuple[str, ...]] = COMPOSE_FILES
    compose_timeout: ClassVar[float] = 900

    https_port: int = field(default_factory=free_port)
    pebble_port: int = field(default_factory=free_port)

    def environment(self) -> dict:
        return {
            **super().environment(),
            "HTTPS_PORT": str(self.https_port),
            "HTTPS_BIND": "127.0.0.1",
            "ACME_NET": ACME_NET,
            "PEBBLE_PORT": str(self.pebble_port),
        }


def tls_context(root_pem: str, *, alpn: bool = True) -> ssl.SSLContext:
    """Trusts pebble's root only, and checks the name, as a browser would."""
    context = ssl.create_default_context(cadata=root_pem)
    if alpn:
        context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def handshake(port: int, context: ssl.SSLContext) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=DOMAIN) as tls:
            return {
                "version": tls.version(),
                "alpn": tls.selected_alpn_protocol(),
                "certificate": tls.getpeercert(),
            }


def served_serial(port: int, root_pem: str) -> str:
    return handshake(port, tls_context(root_pem))["certificate"]["serialNumber"]


def pebble_root(port: int, minica: str) -> str:
    """The root pebble issues under, from its management API (published on loopback)."""
    with httpx.Client(verify=ssl.create_default_context(cadata=minica)) as client:
        root = client.get(f"https://127.0.0.1:{port}/roots/0", extensions={"sni_hostname": "pebble"})
    assert root.status_code == 200, root.text
    return root.text


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_engine()
    site = HttpsStack.copy_of_project(tmp_path_factory.mktemp("https"), name="https")
    site.admin_password = "A-long-test-password-" + site.secret_key[:12]
    site.write_env(
        DJANGO_ALLOWED_HOSTS=DOMAIN,
        PUBLIC_BASE_URL=PUBLIC_BASE_URL,
        HTTPS_DOMAIN=DOMAIN,
        ACME_EMAIL=f"ops@{DOMAIN}",
        DJANGO_SUPERUSER_USERNAME="admin",
        DJANGO_SUPERUSER_PASSWORD=site.admin_password,
        DJANGO_SUPERUSER_EMAIL=f"admin@{DOMAIN}",
    )
    try:
        site.up()
        # pebble's own CA signs its API certificate; its root signs what it issues.
        minica = site.compose("exec", "-T", "certbot", "cat", "/pebble-certs/pebble.minica.pem").stdout
        site.root_pem = pebble_root(site.pebble_port, minica)
        # The certificate is issued, then nginx notices it and reloads.
        deadline = time.monotonic() + 120
        while True:
            try:
                handshake(site.https_port, tls_context(site.root_pem))
                break
            except (OSError, ssl.SSLError) as error:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"no verified HTTPS: {error}\n{site.logs('certbot')}\n{site.logs('nginx')}"
                    ) from error
                time.sleep(1)
        yield site
    finally:
        site.down(volumes=True)


def https_client(stack: HttpsStack) -> httpx.Client:
    return httpx.Client(
        base_url=f"https://127.0.0.1:{stack.https_port}",
        verify=tls_context(stack.root_pem, alpn=False),
        headers={"Host": DOMAIN},
        timeout=10,
    )


def https(client: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
    # Connect to the loopback port, but send and verify the test's name.
    return client.request(method, path, extensions={"sni_hostname": DOMAIN}, **kwargs)


def test_certificate_is_issued_by_pebble_for_the_name_and_served_over_tls13_and_http2(stack):
    served = handshake(stack.https_port, tls_context(stack.root_pem))
    assert served["version"] == "TLSv1.3"
    assert served["alpn"] == "h2"
    assert ("DNS", DOMAIN) in served["certificate"]["subjectAltName"]
    assert "certificate for short.example issued by https://pebble:14000/dir" in stack.logs("certbot")
    assert "serving HTTPS for short.example" in stack.logs("nginx")


def test_contract_over_tls13_with_https_short_urls(stack):
    with https_client(stack) as client:
        health = https(client, "GET", "/")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert health.extensions["network_stream"].get_extra_info("ssl_object").version() == "TLSv1.3"

        created = https(client, "POST", "/", json={"url": "https://example.com/over-tls"})
        assert created.status_code == 201, created.text
        slug = created.json()["short_slug"]
        assert created.json()["short_url"] == f"{PUBLIC_BASE_URL}/{slug}"

        again = https(client, "POST", "/", json={"url": "https://example.com/over-tls"})
        assert (again.status_code, again.json()) == (200, created.json())

        redirect = https(client, "GET", f"/{slug}")
        assert (redirect.status_code, redirect.headers["location"]) == (308, "https://example.com/over-tls")

        missing = https(client, "GET", "/nothing-here")
        assert (missing.status_code, missing.json()) == (404, {"error": "URL not found"})

        # The preview page and the QR code carry the https short URL.
        preview = https(client, "GET", f"/{slug}+")
        assert f"{PUBLIC_BASE_URL}/{slug}" in preview.text
        qr = https(client, "GET", f"/{slug}/qr.svg")
        expected, plain = io.BytesIO(), io.BytesIO()
        segno.make(f"{PUBLIC_BASE_URL}/{slug}", error="m").save(expected, kind="svg", scale=8, border=2)
        segno.make(f"http://{DOMAIN}/{slug}", error="m").save(plain, kind="svg", scale=8, border=2)
        assert qr.content == expected.getvalue() != plain.getvalue()


def test_hsts_on_every_https_answer_redirects_and_errors_included(stack):
    with https_client(stack) as client:
        slug = https(client, "POST", "/", json={"url": "https://example.com/hsts"}).json()["short_slug"]
        answers = {
            "health": https(client, "GET", "/"),
            "redirect": https(client, "GET", f"/{slug}"),
            "head redirect": https(client, "HEAD", f"/{slug}"),
            "unknown slug": https(client, "GET", "/nope-nope"),
            "nginx 405": https(client, "FOO", "/"),
        }
    assert answers["redirect"].status_code == 308
    assert answers["nginx 405"].status_code == 405
    for name, response in answers.items():
        hsts = response.headers.get_list("strict-transport-security")
        assert len(hsts) == 1, (name, hsts)
        max_age = int(re.fullmatch(r"max-age=(\d+)", hsts[0]).group(1))
        assert max_age >= ONE_YEAR, name
    # Plain HTTP answers carry none (browsers ignore it there anyway).
    plain = httpx.get(f"http://127.0.0.1:{stack.http_port}/", headers={"Host": DOMAIN})
    assert "strict-transport-security" not in plain.headers


def test_http_answers_308_to_https_with_path_and_query_except_acme_challenges(stack):
    base = f"http://127.0.0.1:{stack.http_port}"
    for method in ("GET", "HEAD", "POST"):
        response = httpx.request(method, f"{base}/some/path?a=1&b=two%20words", headers={"Host": DOMAIN})
        assert response.status_code == 308, method
        assert response.headers["location"] == f"https://{DOMAIN}/some/path?a=1&b=two%20words"

    # A challenge file as certbot writes it is served as is, over plain HTTP.
    token = "test-token-" + stack.secret_key[:8].replace("/", "_")
    stack.compose(
        "exec",
        "-T",
        "certbot",
        "sh",
        "-c",
        "mkdir -p /var/www/acme/.well-known/acme-challenge"
        f" && printf key-authz > /var/www/acme/.well-known/acme-challenge/{token}",
    )
    challenge = httpx.get(f"{base}/.well-known/acme-challenge/{token}", headers={"Host": DOMAIN})
    assert (challenge.status_code, challenge.text) == (200, "key-authz")
    unknown = httpx.get(f"{base}/.well-known/acme-challenge/not-a-token", headers={"Host": DOMAIN})
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Not found"})


def test_tls_1_1_is_refused_by_the_server(stack):
    def connect(version: ssl.TLSVersion) -> str:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=stack.root_pem)
        # Let this client offer old versions, so any refusal is the server's.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = version
            context.maximum_version = version
        with socket.create_connection(("127.0.0.1", stack.https_port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=DOMAIN) as tls:
                return tls.version()

    assert connect(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    with pytest.raises(ssl.SSLError) as refused:
        connect(ssl.TLSVersion.TLSv1_1)
    # The server's alert, not a client that could not even offer TLS 1.1.
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"


def test_cookies_are_secure_and_the_admin_logs_in_over_https(stack):
    with https_client(stack) as client:
        login_page = https(client, "GET", "/admin/login/")
        assert login_page.status_code == 200
        csrf_cookie = next(c for c in login_page.headers.get_list("set-cookie") if c.startswith("csrftoken="))
        assert "; Secure" in csrf_cookie
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text).group(1)
        logged_in = https(
            client,
            "POST",
            "/admin/login/?next=/admin/",
            data={"csrfmiddlewaretoken": token, "username": "admin", "password": stack.admin_password},
            headers={"Origin": PUBLIC_BASE_URL, "Referer": f"{PUBLIC_BASE_URL}/admin/login/"},
        )
        assert logged_in.status_code == 302, logged_in.text[:500]
        session_cookie = next(
            c for c in logged_in.headers.get_list("set-cookie") if c.startswith("sessionid=")
        )
        assert "; Secure" in session_cookie and "; HttpOnly" in session_cookie


def point_name_elsewhere(stack: HttpsStack, name: str, *, elsewhere: bool) -> None:
    """In the fake DNS: the name at a host with nothing on port 80, or back to nginx."""
    acme_net = stack.environment()["ACME_NET"]
    path, body = (
        ("add-a", {"host": f"{name}.", "addresses": [f"{acme_net}.3"]})
        if elsewhere
        else ("clear-a", {"host": f"{name}."})
    )
    stack.compose(
        "exec",
        "-T",
        "certbot",
        "python",
        "-c",
        "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request("
        "sys.argv[1], data=sys.argv[2].encode(), method='POST'), timeout=10)",
        f"http://dns:8055/{path}",
        json.dumps(body),
    )


def certbot_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("[certbot]")]


def test_a_failed_issuance_logs_one_line_and_keeps_the_working_certificate(stack):
    before = served_serial(stack.https_port, stack.root_pem)
    # A name whose DNS record points elsewhere: pebble's validation fails.
    point_name_elsewhere(stack, "elsewhere.example", elsewhere=True)
    result = stack.compose(
        *("exec", "-T", "-e", "HTTPS_DOMAIN=elsewhere.example", "certbot", "shortener-certbot", "issue"),
        check=False,
    )
    lines = certbot_lines(result.stdout)
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(lines) == 1, result.stdout
    print(lines[0])
    assert lines[0].startswith(
        "[certbot] no certificate for elsewhere.example yet, the site keeps serving HTTP: "
    )
    reason = lines[0].split("serving HTTP: ", 1)[1]
    assert "elsewhere.example" in reason or "refused" in reason.lower(), reason
    assert served_serial(stack.https_port, stack.root_pem) == before


def test_a_failed_renewal_logs_one_line_and_keeps_serving_the_certificate(stack):
    before = served_serial(stack.https_port, stack.root_pem)
    point_name_elsewhere(stack, DOMAIN, elsewhere=True)
    try:
        result = stack.compose(
            "exec", "-T", "certbot", "shortener-certbot", "renew", "--force-renewal", check=False
        )
    finally:
        point_name_elsewhere(stack, DOMAIN, elsewhere=False)
    lines = certbot_lines(result.stdout)
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(lines) == 1, result.stdout
    print(lines[0])
    assert lines[0].startswith(
        "[certbot] renewal of short.example failed, the current certificate stays in use: "
    )
    time.sleep(12)  # longer than nginx's certificate check
    assert served_serial(stack.https_port, stack.root_pem) == before
    with https_client(stack) as client:
        assert https(client, "GET", "/").status_code == 200


def test_forced_renewal_changes_the_served_serial_without_a_failed_request(stack):
    with https_client(stack) as client:
        slug = https(client, "POST", "/", json={"url": "https://example.com/renewal"}).json()["short_slug"]
    before = served_serial(stack.https_port, stack.root_pem)
    stop = threading.Event()
    results = {"keep-alive": [], "new connection": []}

    retried = []

    def keep_alive():
        with https_client(stack) as client:
            while not stop.is_set():
                try:
                    try:
                        status = https(client, "GET", f"/{slug}").status_code
                    except httpx.RemoteProtocolError:
                        # The reload closed this idle keep-alive connection as the
                        # request went out, before nginx read it. Browsers resend
                        # an idempotent request then (RFC 9112, 9.3.1); so does
                        # this client, once, on a new connection.
                        retried.append(time.monotonic())
                        status = https(client, "GET", f"/{slug}").status_code
                    results["keep-alive"].append(status)
                except httpx.HTTPError as error:
                    results["keep-alive"].append(repr(error))

    def new_connections():
        while not stop.is_set():
            try:
                with https_client(stack) as client:
                    results["new connection"].append(https(client, "GET", f"/{slug}").status_code)
            except httpx.HTTPError as error:
                results["new connection"].append(repr(error))

    threads = [threading.Thread(target=keep_alive), threading.Thread(target=new_connections)]
    for thread in threads:
        thread.start()
    try:
        renewal = stack.compose("exec", "-T", "certbot", "shortener-certbot", "renew", "--force-renewal")
        assert "certificate for short.example renewed" in renewal.stdout
        deadline = time.monotonic() + 60
        after = before
        while after == before and time.monotonic() < deadline:
            time.sleep(1)
            after = served_serial(stack.https_port, stack.root_pem)
        time.sleep(2)  # and a little after the reload
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    print(f"served certificate serial before renewal {before}, after {after}")
    print(
        {kind: len(statuses) for kind, statuses in results.items()},
        f"resent on a new connection: {len(retried)}",
    )
    assert after != before
    for kind, statuses in results.items():
        assert statuses, kind
        assert set(statuses) == {308}, (kind, [s for s in statuses if s != 308][:5])


def raw_exchange(port: int, request: bytes, *, root_pem: str | None = None) -> tuple[int, dict, bytes]:
    """One raw request (HTTPS when root_pem is given): status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        sock = tls_context(root_pem, alpn=False).wrap_socket(raw, server_hostname=DOMAIN) if root_pem else raw
        sock.sendall(request)
        return read_answer(sock)


def test_nginx_own_errors_are_the_apps_json_bytes_over_https_and_http(stack):
    host = f"Host: {DOMAIN}\r\n".encode()
    cases = {
        "no Host": (b"GET / HTTP/1.1\r\n\r\n", 400, "Bad request"),
        "garbage request line": (b"GARBAGE\r\n\r\n", 400, "Bad request"),
        "unknown method": (b"FOO / HTTP/1.1\r\n" + host + b"\r\n", 405, "Method not allowed"),
        "TRACE": (b"TRACE /x HTTP/1.1\r\n" + host + b"\r\n", 405, "Method not allowed"),
        "body too large": (
            b"POST / HTTP/1.1\r\n"
            + host
            + b"Content-Type: application/json\r\nContent-Length: 20000\r\n\r\n"
            + b"x" * 20000,
            413,
            "Request body too large",
        ),
        "URI too long": (
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + host + b"\r\n",
            414,
            "Request URI too long",
        ),
        "headers too large": (
            b"GET / HTTP/1.1\r\n" + host + b"X-Big: " + b"a" * 40000 + b"\r\n\r\n",
            431,
            "Request headers too large",
        ),
    }
    for name, (request, status, message) in cases.items():
        for port, root in ((stack.https_port, stack.root_pem), (stack.http_port, None)):
            if name == "body too large" and root is None:
                continue  # plain HTTP redirects before reading a body
            got_status, headers, body = raw_exchange(port, request, root_pem=root)
            assert got_status == status, (name, port, got_status, body[:200])
            assert headers["content-type"] == "application/json", (name, port)
            assert body == json.dumps({"error": message}).encode(), (name, port, body)


def test_only_bearer_requests_skip_nginx_creation_limit(stack):
    def burst(authorization: str | None) -> list[httpx.Response]:
        # 200 at once from 16 connections: far past the burst of 40 however slow
        # the machine (10 more are let through each second).
        headers = {"Authorization": authorization} if authorization else {}
        with https_client(stack) as client, ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(
                pool.map(
                    lambda _: https(client, "POST", "/", json={"url": "not a url"}, headers=headers),
                    range(200),
                )
            )
        time.sleep(5)  # the bucket refills
        return answers

    nginx_429 = json.dumps({"error": "Too many requests, slow down"}).encode()
    for authorization in (None, "Basic eDp5", "Bearerish token", "Bearer"):
        limited = [r for r in burst(authorization) if r.status_code == 429 and r.content == nginx_429]
        assert limited, authorization
        assert limited[0].headers["content-type"] == "application/json"
        assert limited[0].headers["retry-after"] == "1"
        assert limited[0].headers["strict-transport-security"].startswith("max-age=")
    # (The app may still refuse a wrong key its own way; nginx never limits it.)
    keyed = burst("Bearer shk_not-a-real-key")
    assert not [r for r in keyed if r.status_code == 429 and r.content == nginx_429]
    assert {r.status_code for r in keyed} & {401, 403}
