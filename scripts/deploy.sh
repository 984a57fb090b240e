#!/usr/bin/env bash
# Deploy (or update) the shortener on a server prepared by setup-ec2.sh.
#
#   scripts/deploy.sh admin@ec2-1-2-3-4.compute.amazonaws.com --key ~/.ssh/shortener-key.pem
#   scripts/deploy.sh admin@ec2-1-2-3-4.compute.amazonaws.com --key ~/.ssh/shortener-key.pem \
#       --domain short.example --email me@example.com
#
# Copies the project over ssh (rsync; no .git, no local .env, no databases),
# creates the server's .env from .env.example with a fresh secret key if it has
# none (an existing .env is never overwritten), builds and starts the stack with
# docker compose, then runs the smoke test against the server's public URL.
# Re-running updates the app in place; the data volume is kept.
#
# The first deploy writes DJANGO_ALLOWED_HOSTS and PUBLIC_BASE_URL into .env:
# the server's name and http://HOST without --domain; with --domain NAME, the
# name and https://NAME, and the stack runs with HTTPS (docker-compose.https.yml):
# certbot gets a Let's Encrypt certificate for NAME, whose DNS A record must
# point at this server, and renews it. Until it has one the site serves HTTP.
#
# Options:
#   --key PATH          ssh private key
#   --port N            ssh port (default 22)
#   --dir PATH          folder on the server (default: shortener, in the login's home)
#   --url URL           public URL for the smoke test (default http://HOST[:HTTP_PORT],
#                       or https://NAME with --domain once the certificate is served)
#   --domain NAME       serve HTTPS for NAME (first deploy; later ones keep .env's)
#   --email ADDRESS     the ACME account's contact (expiry and problem notices)
#   --acme-server URL   ACME directory (default Let's Encrypt production; for trials
#                       https://acme-staging-v02.api.letsencrypt.org/directory)
#   --no-smoke-test     skip the smoke test
# HTTP_PORT, HTTP_BIND, HTTPS_PORT and HTTPS_BIND, when set here, are passed to
# the server's compose, and so are the NAME=value pairs in DEPLOY_COMPOSE_ENV;
# DEPLOY_COMPOSE_FILES adds compose files (e.g. a test's ACME server);
# DEPLOY_SSH_OPTS adds ssh options (e.g. "-o UserKnownHostsFile=/path").
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }

[ $# -ge 1 ] || usage
TARGET="$1"; shift
[[ "$TARGET" == *@* ]] || { echo "error: the target is user@host, got '$TARGET'" >&2; exit 2; }
SSH_KEY=""
SSH_PORT=22
REMOTE_DIR="shortener"
PUBLIC_URL=""
SMOKE_TEST=1
DOMAIN=""
EMAIL=""
ACME_SERVER_URL=""
while [ $# -gt 0 ]; do
  case "$1" in
    --key) SSH_KEY="$2"; shift 2 ;;
    --port) SSH_PORT="$2"; shift 2 ;;
    --dir) REMOTE_DIR="$2"; shift 2 ;;
    --url) PUBLIC_URL="$2"; shift 2 ;;
    --domain) DOMAIN="$2"; shift 2 ;;
    --email) EMAIL="$2"; shift 2 ;;
    --acme-server) ACME_SERVER_URL="$2"; shift 2 ;;
    --no-smoke-test) SMOKE_TEST=0; shift ;;
    -h|--help) usage ;;
    *) echo "error: unknown option $1" >&2; usage ;;
  esac
done

PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST="${TARGET#*@}"
SSH_OPTIONS=(-p "$SSH_PORT" -o BatchMode=yes -o ConnectTimeout=15 -o StrictHostKeyChecking=accept-new)
[ -n "$SSH_KEY" ] && SSH_OPTIONS+=(-i "$SSH_KEY" -o IdentitiesOnly=yes)
if [ -n "${DEPLOY_SSH_OPTS:-}" ]; then
  read -r -a extra_ssh_options <<< "$DEPLOY_SSH_OPTS"
  SSH_OPTIONS+=("${extra_ssh_options[@]}")
fi
if [ -n "$DOMAIN" ] && ! [[ "$DOMAIN" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ && "$DOMAIN" == *.* ]]; then
  echo "error: --domain takes a DNS name such as short.example, got '$DOMAIN'" >&2; exit 2
fi
if [[ "$DOMAIN" == *.amazonaws.com ]]; then
  echo "error: Let's Encrypt does not issue certificates for names under amazonaws.com;" \
       "point a domain of your own at the server (docs/deploy-ec2.md, HTTPS)" >&2
  exit 2
fi
HTTP_URL="http://$HOST"
[ -n "${HTTP_PORT:-}" ] && [ "${HTTP_PORT}" != 80 ] && HTTP_URL="$HTTP_URL:$HTTP_PORT"
if [ -n "$DOMAIN" ]; then
  NEW_ALLOWED_HOSTS="$DOMAIN"
  NEW_PUBLIC_BASE_URL="https://$DOMAIN"
else
  NEW_ALLOWED_HOSTS="$HOST"
  NEW_PUBLIC_BASE_URL="$HTTP_URL"
fi
# Settings for the server's compose, passed as NAME=value words.
COMPOSE_SETTINGS=()
for name in HTTP_PORT HTTP_BIND HTTPS_PORT HTTPS_BIND; do
  [ -n "${!name:-}" ] && COMPOSE_SETTINGS+=("$name=${!name}")
done
if [ -n "${DEPLOY_COMPOSE_ENV:-}" ]; then
  read -r -a extra_settings <<< "$DEPLOY_COMPOSE_ENV"
  COMPOSE_SETTINGS+=("${extra_settings[@]}")
fi

log() { printf '[deploy] %s\n' "$*"; }
# Arguments are expanded here, on purpose: they are this script's own values.
# shellcheck disable=SC2029
remote() { ssh "${SSH_OPTIONS[@]}" "$TARGET" "$@"; }

log "copying the project to $TARGET:$REMOTE_DIR"
remote mkdir -p "$REMOTE_DIR"
rsync -az --delete \
  -e "ssh ${SSH_OPTIONS[*]}" \
  --include .env.example --exclude .git --exclude .env --exclude '.env.*' \
  --exclude .venv --exclude data --exclude staticfiles --exclude '*.sqlite3*' \
  --exclude __pycache__ --exclude .pytest_cache --exclude .ruff_cache --exclude 'bench/results' \
  "$PROJECT_DIR/" "$TARGET:$REMOTE_DIR/"

# Run on the server: create .env once, then (re)build and start the stack.
# Values are passed as positional arguments, quoted once for the remote shell
# (ssh joins its arguments into one command line; empty ones must survive).
log "starting the stack on $HOST"
STATE_FILE="$(mktemp)"
trap 'rm -f "$STATE_FILE"' EXIT
REMOTE_ARGS="$(printf '%q ' "$REMOTE_DIR" "$DOMAIN" "$EMAIL" "$ACME_SERVER_URL" "$NEW_ALLOWED_HOSTS" \
  "$NEW_PUBLIC_BASE_URL" "${DEPLOY_COMPOSE_FILES:-}" "${COMPOSE_SETTINGS[@]}")"
# shellcheck disable=SC2016
remote "bash -s -- $REMOTE_ARGS" <<'REMOTE' | tee "$STATE_FILE"
set -euo pipefail
cd "$1"
domain="$2" email="$3" acme_server="$4" allowed_hosts="$5" public_base_url="$6" extra_files="$7"
shift 7
for setting in "$@"; do export "${setting?}"; done
say() { echo "[deploy] $*"; }
# Sets NAME=value in .env, replacing the line if there is one.
set_env() {
  if grep -q "^$1=" .env; then
    sed -i "s|^$1=.*|$1=$2|" .env
  else
    printf '%s=%s\n' "$1" "$2" >> .env
  fi
}
if [ ! -f .env ]; then
  secret="$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))' 2>/dev/null \
            || head -c 48 /dev/urandom | base64 | tr -d '\n/+=')"
  umask 077
  sed "s|^DJANGO_SECRET_KEY=.*|DJANGO_SECRET_KEY=$secret|" .env.example > .env
  set_env DJANGO_ALLOWED_HOSTS "$allowed_hosts"
  set_env PUBLIC_BASE_URL "$public_base_url"
  if [ -n "$domain" ]; then
    set_env HTTPS_DOMAIN "$domain"
    set_env ACME_EMAIL "$email"
    [ -n "$acme_server" ] && set_env ACME_SERVER "$acme_server"
  fi
  say "created .env with a new secret key (kept on the server only)"
else
  say "keeping the existing .env"
fi
# HTTPS when .env names a domain (from this deploy's --domain or an earlier one).
domain="$(sed -n 's/^HTTPS_DOMAIN=//p' .env | tail -n 1)"
files=(-f docker-compose.prod.yml)
[ -n "$domain" ] && files+=(-f docker-compose.https.yml)
for file in $extra_files; do files+=(-f "$file"); done
docker compose "${files[@]}" up -d --build --wait --remove-orphans
docker compose "${files[@]}" ps
if [ -z "$domain" ]; then
  say "state: http"
  exit 0
fi
# certbot starts once nginx is up; nginx serves HTTPS within seconds of the certificate.
for _ in $(seq 1 90); do
  if docker compose "${files[@]}" logs --no-color nginx 2>/dev/null | grep -q "serving HTTPS for $domain"; then
    say "HTTPS is served for $domain"
    say "state: https $domain"
    exit 0
  fi
  sleep 2
done
say "no certificate for $domain yet, the site serves HTTP meanwhile:"
docker compose "${files[@]}" logs --no-color certbot 2>/dev/null | grep '\[certbot\]' | tail -n 1 || true
say "state: http"
REMOTE
STATE="$(sed -n 's/^\[deploy\] state: //p' "$STATE_FILE" | tail -n 1)"

if [ -z "$PUBLIC_URL" ]; then
  case "$STATE" in
    https\ *) PUBLIC_URL="https://${STATE#https }" ;;
    *) PUBLIC_URL="$HTTP_URL" ;;
  esac
fi
if [ "$SMOKE_TEST" = 1 ]; then
  log "smoke test against $PUBLIC_URL"
  python3 "$PROJECT_DIR/scripts/smoke_test.py" "$PUBLIC_URL"
fi
log "deployed: $PUBLIC_URL"
