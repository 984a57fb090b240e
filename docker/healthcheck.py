"""Container health check: the app answers GET / with 200. Slim images have no curl."""

import sys
import urllib.request

request = urllib.request.Request("http://127.0.0.1:8000/", headers={"Host": "localhost"})
try:
    with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310 - fixed local URL
        sys.exit(0 if response.status == 200 else 1)
except OSError as error:
    print(f"unhealthy: {error}", file=sys.stderr)
    sys.exit(1)
