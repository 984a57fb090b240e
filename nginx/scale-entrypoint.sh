#!/bin/sh
# nginx's entrypoint in docker-compose.scale.yml: a watcher that re-resolves the
# app service's name every APP_RESOLVE_INTERVAL seconds and reloads nginx
# gracefully (old workers finish their requests) when the replicas' addresses
# change, then the image's own entrypoint.
#
# Open-source nginx resolves an upstream's host names only when it loads its
# configuration (the "resolve" parameter needs 1.27.3+), and a variable
# proxy_pass would lose the pooled keep-alive connections; a reload keeps both.
set -eu

NAME="${APP_SERVICE_NAME:-app}"
INTERVAL="${APP_RESOLVE_INTERVAL:-1}"

log() { printf '[nginx-scale] %s\n' "$*" >&2; }

addresses() { getent ahostsv4 "$NAME" 2>/dev/null | awk '{print $1}' | sort -u | tr '\n' ' '; }

watch_replicas() {
    last="$(addresses)"
    log "replicas of $NAME: ${last:-none}"
    while sleep "$INTERVAL"; do
        now="$(addresses)"
        [ "$now" = "$last" ] && continue
        # No address at all (every replica down): keep the last configuration,
        # which fails over to whichever comes back on its old address.
        [ -n "$now" ] || continue
        if nginx -t -q 2>/dev/null && nginx -s reload 2>/dev/null; then
            log "replicas of $NAME changed: $now(reloaded)"
            last="$now"
        fi
    done
}

watch_replicas &
exec /docker-entrypoint.sh "$@"
