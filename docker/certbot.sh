#!/bin/sh
# The certbot service of the HTTPS stack (docker-compose.https.yml).
#
#   shortener-certbot loop            get the certificate, then try to renew it twice a day
#   shortener-certbot renew [ARGS]    one renewal now (e.g. --force-renewal), same settings
#   shortener-certbot issue           one attempt at the first certificate
#
# Settings (environment): HTTPS_DOMAIN (required), ACME_EMAIL, ACME_SERVER
# (the ACME directory; Let's Encrypt production by default), ACME_CA_BUNDLE
# (extra CA certificates to trust for the ACME server, a path in this container),
# ACME_RENEW_INTERVAL / ACME_RETRY_INTERVAL (seconds between renewal attempts /
# between first-issuance attempts). The challenge files go to /var/www/acme,
# which nginx serves on port 80; nginx notices a new certificate by itself
# (nginx/entrypoint.sh), so nothing here needs to reach into its container.
set -eu

DOMAIN="${HTTPS_DOMAIN:-}"
SERVER="${ACME_SERVER:-https://acme-v02.api.letsencrypt.org/directory}"
WEBROOT=/var/www/acme
RENEW_INTERVAL="${ACME_RENEW_INTERVAL:-43200}"
RETRY_INTERVAL="${ACME_RETRY_INTERVAL:-3600}"

log() { printf '[certbot] %s\n' "$*"; }

if [ -z "$DOMAIN" ]; then
  log "HTTPS_DOMAIN is not set: nothing to do (deploy with --domain to turn HTTPS on)"
  exit 2
fi

if [ -n "${ACME_CA_BUNDLE:-}" ]; then
  # Trusted in addition to the system's CAs, for a private or test ACME server.
  cat /etc/ssl/certs/ca-certificates.crt "$ACME_CA_BUNDLE" > /tmp/acme-ca-bundle.pem
  export REQUESTS_CA_BUNDLE=/tmp/acme-ca-bundle.pem
fi

mkdir -p "$WEBROOT"

# The reason certbot gave, in one line: the CA's "Detail:" if there is one,
# else certbot's last error line.
one_line_reason() {
  reason="$(grep -m1 -E '^[[:space:]]*Detail:' "$1" | sed 's/^[[:space:]]*Detail:[[:space:]]*//')"
  [ -n "$reason" ] || reason="$(grep -v '^[[:space:]]*$' "$1" | grep -v -i 'ask for help\|log file\|letsencrypt.log' | tail -n 1)"
  printf '%s' "$reason" | tr -s '\n\t' '  '
}

have_certificate() { [ -f "/etc/letsencrypt/live/$DOMAIN/fullchain.pem" ]; }

issue() {
  out=/tmp/certbot-issue.log
  if [ -n "${ACME_EMAIL:-}" ]; then set -- --email "$ACME_EMAIL"; else set -- --register-unsafely-without-email; fi
  if certbot certonly --non-interactive --agree-tos "$@" \
      --server "$SERVER" --webroot -w "$WEBROOT" --cert-name "$DOMAIN" -d "$DOMAIN" \
      --keep-until-expiring > "$out" 2>&1; then
    log "certificate for $DOMAIN issued by $SERVER; nginx switches to HTTPS within seconds"
    return 0
  fi
  log "no certificate for $DOMAIN yet, the site keeps serving HTTP: $(one_line_reason "$out") (next try in ${RETRY_INTERVAL}s)"
  return 1
}

renew() {
  # certbot renew keeps the live certificate unless a new one was issued, so a
  # failed renewal never takes a working certificate away.
  out=/tmp/certbot-renew.log
  if certbot renew --non-interactive --cert-name "$DOMAIN" "$@" > "$out" 2>&1; then
    if grep -q 'Congratulations' "$out"; then
      log "certificate for $DOMAIN renewed; nginx reloads it within seconds"
    else
      log "certificate for $DOMAIN is not due for renewal"
    fi
    return 0
  fi
  log "renewal of $DOMAIN failed, the current certificate stays in use: $(one_line_reason "$out")"
  return 1
}

case "${1:-loop}" in
  renew)
    shift
    have_certificate || { log "no certificate for $DOMAIN to renew"; exit 1; }
    renew --no-random-sleep-on-renew "$@"
    ;;
  issue)
    issue
    ;;
  loop)
    trap 'exit 0' TERM INT
    while :; do
      if have_certificate; then
        renew || true
        pause="$RENEW_INTERVAL"
      elif issue; then
        pause="$RENEW_INTERVAL"
      else
        pause="$RETRY_INTERVAL"
      fi
      # In the background, so a stop signal ends the wait at once.
      sleep "$pause" &
      wait $! || true
    done
    ;;
  *)
    echo "usage: shortener-certbot [loop | issue | renew [certbot renew options]]" >&2
    exit 2
    ;;
esac
