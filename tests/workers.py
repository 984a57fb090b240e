"""Which uvicorn worker process answered a request: each request goes on a fresh
connection, and the worker holding that connection's socket is looked up with
psutil, so a test can show that every worker answered rather than assume it."""

import json
import socket
import subprocess

import psutil

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


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
        f"User-Agent: {BROWSER}",
        f"Content-Length: {len(body)}",
        *(["Content-Type: application/json"] if payload is not None else []),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the response headers"
            response += chunk
        head, _, content = response.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip() for name, value in (h.split(":", 1) for h in header_lines)
        }
        length = int(headers.get("content-length", "0"))
        while len(content) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the response body"
            content += chunk
        status = int(status_line.split(" ", 2)[1])
        # The connection is still open (keep-alive): whose is it?
        client_port = sock.getsockname()[1]
        for worker in workers(server):
            for conn in worker.net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == client_port:
                    return worker.pid, status, headers, content
    raise AssertionError("no worker holds the connection")
