"""Which uvicorn worker process answered a request: each request goes on a fresh
connection, and the worker holding that connection's socket is looked up with
psutil, so a test can show that every worker answered rather than assume it."""

import json
import socket
import subprocess

import psutil

from tests.project import BROWSER_USER_AGENT, read_answer


def workers(server: subprocess.Popen) -> list[psutil.Process]:
    # uvicorn's worker processes (not multiprocessing's resource tracker).
    children = psutil.Process(server.pid).children()
    return [child for child in children if "spawn_main" in " ".join(child.cmdline())]


def traced_request(
    server: subprocess.Popen,
    base_url: str,
    method: str,
    path: str,
    *,
    host: str | None = None,
    payload: dict | None = None,
) -> tuple[int, int, dict[str, str], bytes]:
    """(worker pid, status, headers, body) of one request on a fresh connection."""
    port = int(base_url.rsplit(":", 1)[1])
    body = json.dumps(payload).encode() if payload is not None else b""
    head = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host or f'127.0.0.1:{port}'}",
        f"User-Agent: {BROWSER_USER_AGENT}",
        f"Content-Length: {len(body)}",
        *(["Content-Type: application/json"] if payload is not None else []),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status, headers, content = read_answer(sock)
        # The connection is still open (keep-alive): whose is it?
        client_port = sock.getsockname()[1]
        for worker in workers(server):
            for conn in worker.net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == client_port:
                    return worker.pid, status, headers, content
    raise AssertionError("no worker holds the connection")
