#!/bin/sh
# Creates the admin user named by DJANGO_SUPERUSER_* (if set and missing),
# then becomes the server process.
set -e
python /app/manage.py ensure_superuser
exec "$@"
