"""Container health check: the app answers GET /healthz with 200, which it does
only while its database can be read and written (a read-only volume or a full
disk makes the container unhealthy). Slim images have no curl."""

import sys
import urllib.error
import urllib.request

request = urllib.request.Request("http://127.0.0.1:8000/healthz", headers={"Host": "localhost"})
try:
    with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310 - fixed local URL
        sys.exit(0 if response.status == 200 else 1)
except urllib.error.HTTPError as error:
    print(f"unhealthy: {error.code} {error.read().decode(errors='replace')}", file=sys.stderr)
    sys.exit(1)
except OSError as error:
    print(f"unhealthy: {error}", file=sys.stderr)
    sys.exit(1)
