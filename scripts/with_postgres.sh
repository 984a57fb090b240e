#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL cluster (Debian's postgresql package)
# on loopback, with DATABASE_URL pointing at it; the cluster is removed afterwards.
#
#   bash scripts/with_postgres.sh .venv/bin/python -m pytest tests/test_api_contract.py
set -euo pipefail

pg_bin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
if [ -z "$pg_bin" ]; then
  echo "with_postgres: PostgreSQL is not installed (apt-get install postgresql)" >&2
  exit 2
fi
workdir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# PostgreSQL refuses to run as root: root runs it as the package's postgres user.
as_owner=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$workdir"
  as_owner=(runuser -u postgres --)
fi
cleanup() {
  "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$workdir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$workdir"
}
trap cleanup EXIT

echo "with_postgres: starting PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
"${as_owner[@]}" "$pg_bin/initdb" -D "$workdir/data" -U shortener --auth=trust -E UTF8 >/dev/null
# Durability is not under test here: fsync off makes the suite several times faster.
"${as_owner[@]}" "$pg_bin/pg_ctl" -D "$workdir/data" -l "$workdir/log" -w \
  -o "-p $port -k $workdir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
"${as_owner[@]}" "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U shortener shortener

DATABASE_URL="postgres://shortener@127.0.0.1:$port/shortener" "$@"
