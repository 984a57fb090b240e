# The shortener app: Django on uvicorn (ASGI), static files by whitenoise.
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SQLITE_PATH=/data/shortener.sqlite3 \
    DJANGO_STATIC_ROOT=/app/staticfiles

# A fixed uid/gid, the same in the migration image, owns the database volume.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app \
 && install -d -o app -g app /data /run/shortener

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements change.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY manage.py ./
COPY shortener_site ./shortener_site
COPY links ./links
COPY docker/app-entrypoint.sh docker/attached_networks.py docker/healthcheck.py ./docker/

# Static files are collected at build time; DEBUG here only spares the build
# a secret key (no database is touched, nothing secret is baked in).
RUN DJANGO_DEBUG=1 python manage.py collectstatic --noinput --verbosity 0

USER app
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "/app/docker/healthcheck.py"]

# glibc gives the top of a heap back once more than the trim threshold is free. By
# default both its thresholds move: freeing an mmapped block raises the mmap
# threshold to its size (at most 32 MiB) and the trim threshold to twice that, and
# later blocks of that size stay in the heap. Set, the trim threshold (and with it
# the mmap threshold) stays at 128 KiB: the click journal's roll-up (links/clicks.py)
# sorts a few MiB in the flusher thread every few seconds, which otherwise stayed
# with each worker, about 12 MiB a worker at 1,000,000 links. Blocks of 128 KiB and
# more are then mapped and unmapped each time; the redirect rate did not change
# (docs/performance.md, 2026-11-30, third session). glibc only (the image is Debian).
ENV MALLOC_TRIM_THRESHOLD_=131072

# Workers: $WEB_CONCURRENCY (default 1, right for a 1 vCPU t2.micro).
# X-Forwarded-* are believed only from $FORWARDED_ALLOW_IPS (the proxy).
# No access log: nginx logs every request already, and uvicorn's halves the
# redirect throughput (docs/benchmarks.md). links.protocol is uvicorn's own
# HTTP protocol with plain redirects answered without an ASGI task
# (docs/performance.md). Idle keep-alive connections are kept 75 s, longer than
# nginx keeps its pooled ones (keepalive_timeout 60s, nginx/app-*.conf): nginx
# closes an idle connection first, never the app under a request nginx is just
# sending on it, which nginx cannot retry for a POST (a 502; uvicorn's default
# of 5 s gave one in a CI run).
ENV WEB_CONCURRENCY=1 \
    FORWARDED_ALLOW_IPS=127.0.0.1
ENTRYPOINT ["/app/docker/app-entrypoint.sh"]
CMD ["uvicorn", "shortener_site.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--http", "links.protocol:FastRedirectProtocol", \
     "--proxy-headers", "--no-server-header", "--no-access-log", "--timeout-graceful-shutdown", "10", \
     "--timeout-keep-alive", "75"]
