#!/bin/sh
# nginx's entrypoint in docker-compose.prod.yml: writes the server blocks for
# the state the site is in, then runs the image's own entrypoint.
#
#   HTTPS_DOMAIN empty            port 80 serves the site (plain HTTP)
#   HTTPS_DOMAIN, no certificate  port 80 serves the site and ACME challenges,
#                                 until certbot has a certificate
#   HTTPS_DOMAIN and certificate  port 443 serves the site (TLS, HSTS); port 80
#                                 serves ACME challenges and answers everything
#                                 else with a 308 to the same path on https
#
# With a domain, a watcher checks the certificate every CERT_CHECK_INTERVAL
# seconds: when certbot issues or renews it, the configuration is rewritten,
# tested, and nginx reloaded gracefully (old workers finish their requests).
# So nginx starts before any certificate exists, and certbot never needs to
# reach into this container.
set -eu

SRC=/etc/nginx/shortener
CONF=/etc/nginx/conf.d/default.conf
DOMAIN="${HTTPS_DOMAIN:-}"
LIVE="/etc/letsencrypt/live/$DOMAIN"
INTERVAL="${CERT_CHECK_INTERVAL:-10}"

log() { printf '[nginx-https] %s\n' "$*" >&2; }

have_certificate() { [ -n "$DOMAIN" ] && [ -s "$LIVE/fullchain.pem" ] && [ -s "$LIVE/privkey.pem" ]; }

fingerprint() { cat "$LIVE/fullchain.pem" "$LIVE/privkey.pem" 2>/dev/null | cksum; }

render() {
    echo "# Written by nginx/entrypoint.sh at start and when the certificate changes."
    echo "include $SRC/common.conf;"
    echo "include $SRC/app-socket.conf;"
    if ! have_certificate; then
        cat <<EOF
server {
    listen 80 default_server;
    listen [::]:80 default_server;
    server_name _;
    include $SRC/edge.conf;
$( [ -n "$DOMAIN" ] && echo "    include $SRC/acme.conf;" )
    include $SRC/app.conf;
}
EOF
        return
    fi
    cat <<EOF
server {
    listen 80 default_server;
    listen [::]:80 default_server;
    server_name _;
    include $SRC/edge.conf;
    include $SRC/acme.conf;
    location / {
        return 308 https://\$host\$request_uri;
    }
}
server {
    listen 443 ssl http2 default_server;
    listen [::]:443 ssl http2 default_server;
    server_name _;
    ssl_certificate $LIVE/fullchain.pem;
    ssl_certificate_key $LIVE/privkey.pem;
    include $SRC/tls.conf;
    include $SRC/edge.conf;
    include $SRC/app.conf;
}
EOF
}

describe() {
    if [ -z "$DOMAIN" ]; then
        echo "serving HTTP (no HTTPS_DOMAIN)"
    elif have_certificate; then
        echo "serving HTTPS for $DOMAIN; HTTP redirects to it"
    else
        echo "no certificate for $DOMAIN yet: serving HTTP until certbot gets one"
    fi
}

watch_certificate() {
    last="$(fingerprint)"
    while sleep "$INTERVAL"; do
        now="$(fingerprint)"
        [ "$now" = "$last" ] && continue
        cp "$CONF" "$CONF.previous"
        render > "$CONF"
        # certbot replaces the certificate and its key one after the other: a
        # half-written pair fails the test and is tried again next round.
        if nginx -t -q 2>/dev/null; then
            nginx -s reload
            last="$now"
            log "certificate changed, reloaded: $(describe)"
        else
            mv "$CONF.previous" "$CONF"
        fi
    done
}

render > "$CONF"
log "$(describe)"
if [ -n "$DOMAIN" ]; then
    watch_certificate &
fi
exec /docker-entrypoint.sh "$@"
