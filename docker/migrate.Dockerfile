# One-shot migration runner: applies the schema to the shared database volume,
# then exits (0 on success, non-zero on failure, which keeps the app down).
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SQLITE_PATH=/data/shortener.sqlite3

# Same user as the app image, so the database files it creates are the app's.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app \
 && install -d -o app -g app /data

WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY manage.py ./
COPY shortener_site ./shortener_site
COPY links ./links

USER app
VOLUME ["/data"]

ENTRYPOINT ["python", "manage.py", "migrate", "--noinput"]
