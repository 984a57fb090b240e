#!/bin/sh
# The backup container starts as root only to give a local backup folder to the
# app user (Docker creates a missing bind-mounted folder as root), then runs the
# command as that user, so the database files it touches stay the app's.
set -e
if [ "$(id -u)" = 0 ]; then
  case "$BACKUP_DEST" in
    s3://*) ;;
    "") ;;
    *)
      # A folder that cannot be made is reported by the backup itself (logs, health).
      { mkdir -p "$BACKUP_DEST" && chown app:app "$BACKUP_DEST"; } || true
      ;;
  esac
  exec setpriv --reuid=app --regid=app --init-groups -- "$@"
fi
exec "$@"
