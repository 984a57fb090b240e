#!/usr/bin/env bash
# Set up and run the site locally on SQLite: http://127.0.0.1:8000/
# (PORT=8001 bash scripts/run_local.sh for another port).
# Needs only Python 3.11+ (with venv). Re-running is safe and quick.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  echo "==> creating the virtual environment .venv"
  python3 -m venv .venv
fi
echo "==> pip: installing the site's dependencies into .venv (requirements.txt)"
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt

# Local development settings (DEBUG on: no secret key needed), read by the
# settings whenever the environment does not say otherwise, so manage.py
# commands work in this checkout too. data/ never leaves this machine.
mkdir -p data
if [ ! -f data/local.env ]; then
  cat >data/local.env <<'EOF'
# Written by scripts/run_local.sh: settings for this checkout's local site and
# manage.py. Never copied into images or deploys; the environment wins over it.
DJANGO_DEBUG=1
EOF
fi

.venv/bin/python manage.py migrate --noinput
echo "==> serving http://127.0.0.1:${PORT:-8000}/ (Ctrl+C stops)"
# h11 rather than httptools: it reads any method token, so an unknown method
# such as FOO reaches Django and gets the JSON 405 that nginx gives in production
# (httptools refuses it with a text/plain 400 before the app sees it).
exec .venv/bin/python -m uvicorn shortener_site.asgi:application --host 127.0.0.1 --port "${PORT:-8000}" \
  --http h11
