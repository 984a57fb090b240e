# certbot for the HTTPS stack (docker-compose.https.yml): gets and renews the
# site's certificate over the webroot it shares with nginx. Built here rather
# than pulled so it runs on the same Debian base as the app image.
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install certbot==5.8.0

COPY docker/certbot.sh /usr/local/bin/shortener-certbot
RUN chmod 0755 /usr/local/bin/shortener-certbot

VOLUME ["/etc/letsencrypt", "/var/www/acme"]
ENTRYPOINT ["shortener-certbot"]
CMD ["loop"]
