# The backup service: a backup of the database volume every BACKUP_INTERVAL, and the
# one-off container that restores one (docs/deploy-ec2.md, "Backups").
# The first layers are the app image's, so a build shares them.
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SQLITE_PATH=/data/shortener.sqlite3 \
    DJANGO_STATIC_ROOT=/app/staticfiles

# The app's uid/gid: backups and restores read and write the database as the app does.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app \
 && install -d -o app -g app /data

WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY manage.py ./
COPY shortener_site ./shortener_site
COPY links ./links
COPY docker/backup-entrypoint.sh docker/backup-scheduler.py docker/backup-healthcheck.py ./docker/

VOLUME ["/data"]

ENV BACKUP_DEST=/backups \
    BACKUP_INTERVAL=6h \
    BACKUP_KEEP=28

# Unhealthy when the last backup failed, or when one is long overdue.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=1 \
    CMD ["python", "/app/docker/backup-healthcheck.py"]

# Starts as root only to hand a local backup folder to the app user, then runs as it.
ENTRYPOINT ["/app/docker/backup-entrypoint.sh"]
CMD ["python", "/app/docker/backup-scheduler.py"]
