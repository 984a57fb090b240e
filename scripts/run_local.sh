#!/usr/bin/env bash
# Set up and run the site locally on SQLite: http://127.0.0.1:8000/
# Needs only Python 3.11+ (with venv). Re-running is safe and quick.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt

# Local development: DEBUG on (no secret key needed), data in ./data/.
export DJANGO_DEBUG="${DJANGO_DEBUG:-1}"
.venv/bin/python manage.py migrate --noinput
exec .venv/bin/uvicorn shortener_site.asgi:application --host 127.0.0.1 --port "${PORT:-8000}"
