"""What the tests and the benchmark harness share: the project folder, copies of
it as they travel (what is left out), free loopback ports, a stack's compose
settings, one HTTP answer read off a raw socket. Plain Python (no pytest), so
bench/run.py imports it too."""

import os
import shutil
import socket
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
COMPOSE_FILE = "docker-compose.prod.yml"

# What a copy of the project leaves out, as deploy.sh's rsync and the scp route
# in docs/deploy-ec2.md do: git history, secrets, local data and build output.
LEFT_OUT = (
    ".git",
    ".venv",
    ".env",
    "data",
    "staticfiles",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "results",
    "node_modules",
)
COPY_IGNORE = shutil.ignore_patterns(*LEFT_OUT)

# A desktop browser: its redirects count as clicks (bots and scripts do not).
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer off a socket (plain or TLS): its status, its headers
    (names in lower case) and its body, as long as its Content-Length says or,
    without one, up to the server's close. Not for an answer whose length is
    not its body's (to HEAD, a 304): it would wait for that body."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the end of the headers: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    length = int(headers["content-length"]) if "content-length" in headers else None
    while length is None or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            assert length is None, f"closed mid-body: {len(body)} of {length} bytes"
            break
        body += chunk
    return int(status_line.split(" ", 2)[1]), headers, body


def copy_project(destination: Path) -> Path:
    """The project as it would be copied to a server (nothing in LEFT_OUT)."""
    shutil.copytree(PROJECT_DIR, destination, ignore=COPY_IGNORE)
    return destination


def compose_environment(*, http_port: int) -> dict:
    """The environment for `docker compose` of one stack: nginx on a loopback port."""
    return {**os.environ, "HTTP_PORT": str(http_port), "HTTP_BIND": "127.0.0.1"}
