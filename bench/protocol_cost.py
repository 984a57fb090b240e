"""What one redirect costs in the production protocol, in-process: links.protocol
fed the requests nginx sends (1,000 links, random slugs, a browser's
User-Agent so every one is a counted click) on a transport that keeps the bytes
written and makes no system call. That is the Python of a request, from its
bytes to its answer's bytes: uvicorn's parser callbacks, the fast path, the
click, the keep-alive timer. Run it in two trees (a git worktree) to compare
them; read the figures as ratios within one sitting.

    DJANGO_DEBUG=1 .venv/bin/python bench/protocol_cost.py [--requests 100000] [--rounds 5]
"""

import argparse
import asyncio
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.inprocess import setup_django

BROWSER = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


class CountingTransport:
    """What the protocol asks of uvloop's transport, without a socket."""

    def __init__(self):
        self.answers: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.answers.append(data[:12])

    def get_extra_info(self, name: str, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        raise AssertionError("a keep-alive connection was closed")


def nginx_request(slug: str) -> bytes:
    """A redirect's request as nginx/app.conf passes it on."""
    return (
        b"GET /" + slug.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: 203.0.113.7\r\n"
        b"X-Real-IP: 203.0.113.7\r\nX-Forwarded-Proto: http\r\nUser-Agent: " + BROWSER + b"\r\n\r\n"
    )


async def measure(requests: list[bytes], rounds: int) -> list[float]:
    import uvicorn
    from uvicorn.server import ServerState

    from links.protocol import FastRedirectProtocol

    config = uvicorn.Config(
        "shortener_site.asgi:application",
        http=FastRedirectProtocol,
        access_log=False,
        lifespan="off",
        proxy_headers=True,
        forwarded_allow_ips="*",
    )
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Mon, 30 Nov 2026 00:00:00 GMT")]
    protocol = FastRedirectProtocol(
        config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = CountingTransport()
    protocol.connection_made(transport)
    for request in requests[:2000]:  # the cache filled
        protocol.data_received(request)
    per_request = []
    for _ in range(rounds):
        transport.answers.clear()
        started = time.perf_counter()
        for request in requests:
            protocol.data_received(request)
        per_request.append((time.perf_counter() - started) / len(requests))
        # Every request answered in place, a redirect.
        assert transport.answers == [b"HTTP/1.1 308"] * len(requests), set(transport.answers)
    return per_request


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="protocol-cost-"))
    os.environ["SHORTENER_CLICK_FLUSH_SECONDS"] = "600"  # no flush while measuring
    setup_django(database=data / "bench.sqlite3")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("seed_links", "--count", "1000", "--quiet", verbosity=0)
    with sqlite3.connect(data / "bench.sqlite3") as db:
        slugs = [slug for (slug,) in db.execute("SELECT slug FROM links_link")]
    requests = [nginx_request(random.choice(slugs)) for _ in range(args.requests)]

    import uvloop

    for seconds in uvloop.run(measure(requests, args.rounds)):
        print(f"{seconds * 1e9:8.0f} ns a redirect")


if __name__ == "__main__":
    main()
