#!/usr/bin/env bash
# Deploy (or update) the shortener on a server prepared by setup-ec2.sh.
#
#   scripts/deploy.sh admin@ec2-1-2-3-4.compute.amazonaws.com --key ~/.ssh/shortener-key.pem
#
# Copies the project over ssh (rsync; no .git, no local .env, no databases),
# creates the server's .env from .env.example with a fresh secret key if it has
# none (an existing .env is never overwritten), builds and starts the stack with
# docker compose, then runs the smoke test against the server's public URL.
# Re-running updates the app in place; the data volume is kept.
#
# Options:
#   --key PATH       ssh private key
#   --port N         ssh port (default 22)
#   --dir PATH       folder on the server (default: shortener, in the login's home)
#   --url URL        public URL for the smoke test (default http://HOST[:HTTP_PORT])
#   --no-smoke-test  skip the smoke test
# HTTP_PORT and HTTP_BIND, when set here, are passed to the server's compose;
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
while [ $# -gt 0 ]; do
  case "$1" in
    --key) SSH_KEY="$2"; shift 2 ;;
    --port) SSH_PORT="$2"; shift 2 ;;
    --dir) REMOTE_DIR="$2"; shift 2 ;;
    --url) PUBLIC_URL="$2"; shift 2 ;;
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
if [ -z "$PUBLIC_URL" ]; then
  PUBLIC_URL="http://$HOST"
  [ -n "${HTTP_PORT:-}" ] && [ "${HTTP_PORT}" != 80 ] && PUBLIC_URL="$PUBLIC_URL:$HTTP_PORT"
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
# Values are passed as positional arguments, so nothing here is re-quoted.
log "starting the stack on $HOST"
# shellcheck disable=SC2016
remote bash -s -- "$REMOTE_DIR" "${HTTP_PORT:-}" "${HTTP_BIND:-}" <<'REMOTE'
set -euo pipefail
cd "$1"
if [ ! -f .env ]; then
  secret="$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))' 2>/dev/null \
            || head -c 48 /dev/urandom | base64 | tr -d '\n/+=')"
  umask 077
  sed "s|^DJANGO_SECRET_KEY=.*|DJANGO_SECRET_KEY=$secret|" .env.example > .env
  echo "[deploy] created .env with a new secret key (kept on the server only)"
else
  echo "[deploy] keeping the existing .env"
fi
[ -n "$2" ] && export HTTP_PORT="$2"
[ -n "$3" ] && export HTTP_BIND="$3"
docker compose -f docker-compose.prod.yml up -d --build --wait --remove-orphans
docker compose -f docker-compose.prod.yml ps
REMOTE

if [ "$SMOKE_TEST" = 1 ]; then
  log "smoke test against $PUBLIC_URL"
  python3 "$PROJECT_DIR/scripts/smoke_test.py" "$PUBLIC_URL"
fi
log "deployed: $PUBLIC_URL"
