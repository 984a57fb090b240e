"""Container health check: the app answers GET /healthz with 200, which it does
only while its database can be read and written (a read-only volume or a full
disk makes the container unhealthy). Slim images have no curl.

Asks where uvicorn listens: its Unix socket when UVICORN_UDS is set
(docker-compose.prod.yml), else 127.0.0.1:8000."""

import http.client
import os
import socket
import sys


class UnixSocketConnection(http.client.HTTPConnection):
    def __init__(self, path: str, *, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


socket_path = os.environ.get("UVICORN_UDS")
if socket_path:
    connection = UnixSocketConnection(socket_path, timeout=3)
else:
    connection = http.client.HTTPConnection("127.0.0.1", 8000, timeout=3)
try:
    connection.request("GET", "/healthz", headers={"Host": "localhost"})
    response = connection.getresponse()
    body = response.read().decode(errors="replace")
except OSError as error:
    print(f"unhealthy: {error}", file=sys.stderr)
    sys.exit(1)
if response.status != 200:
    print(f"unhealthy: {response.status} {body}", file=sys.stderr)
    sys.exit(1)
