#!/bin/sh
# Runs the command given (nginx's own entrypoint) with a watcher beside it that
# re-resolves the app service's name every APP_RESOLVE_INTERVAL seconds and
# reloads nginx gracefully (old workers finish their requests) when the app's
# addresses change: replicas added, removed or restarted on new addresses
# (docker-compose.scale.yml).
#
# Open-source nginx resolves an upstream's host names only when it loads its
# configuration (the "resolve" parameter needs 1.27.3+), and a variable
# proxy_pass would lose the pooled keep-alive connections; a reload keeps both.
set -eu

NAME="${APP_SERVICE_NAME:-app}"
INTERVAL="${APP_RESOLVE_INTERVAL:-1}"

log() { printf '[nginx-app] %s %s\n' "$(date +%T)" "$*" >&2; }

# Bounded: while the app is between containers its name is unknown, and a
# resolver that forwards unknown names to an unreachable upstream can take many
# seconds to say so; the next round asks again.
addresses() {
    timeout 2 getent ahostsv4 "$NAME" 2>/dev/null | awk '{print $1}' | sort -u | tr '\n' ' '
}

watch_app() {
    last="$(addresses)"
    log "addresses of $NAME: ${last:-none}"
    while sleep "$INTERVAL"; do
        now="$(addresses)"
        [ "$now" = "$last" ] && continue
        # No address at all (the app stopped, every replica down): keep the last
        # configuration; nginx answers its JSON 502 until the app is back.
        [ -n "$now" ] || continue
        if nginx -t -q 2>/dev/null && nginx -s reload 2>/dev/null; then
            log "addresses of $NAME changed: $now(reloaded)"
            last="$now"
        fi
    done
}

watch_app &
exec "$@"
