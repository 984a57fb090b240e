#!/bin/sh
# Creates the admin user named by DJANGO_SUPERUSER_* (if set and missing),
# then becomes the server process.
set -e
if [ -n "${UVICORN_UDS:-}" ]; then
    # A socket file left by a killed predecessor would make the bind fail.
    rm -f "$UVICORN_UDS"
fi
if [ "${FORWARDED_ALLOW_IPS:-}" = "attached-networks" ]; then
    # The compose files' setting: trust the proxy on the stack's own network,
    # whatever address the engine gave it (docker/attached_networks.py).
    FORWARDED_ALLOW_IPS="$(python /app/docker/attached_networks.py)"
    export FORWARDED_ALLOW_IPS
    echo "app-entrypoint: X-Forwarded-* believed from $FORWARDED_ALLOW_IPS" >&2
fi
python /app/manage.py ensure_superuser
exec "$@"
