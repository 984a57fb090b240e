"""The backup service: `manage.py backup_db $BACKUP_DEST --keep $BACKUP_KEEP` every
$BACKUP_INTERVAL, timed from the newest backup already at the destination, so a
restarted container neither skips a backup nor takes an extra one.

Each outcome is logged (docker compose logs backup) and written to a status
file that the container's health check reads: a failed backup makes the
container unhealthy until a later one succeeds (retried every few minutes).
"""

import json
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shortener_site.settings")

import django

django.setup()

from links.backups import BackupError, create_backup, newest_backup, parse_interval  # noqa: E402

STATUS_FILE = Path(os.environ.get("BACKUP_STATUS_FILE", "/tmp/backup-status.json"))  # noqa: S108
RETRY_SECONDS = 300

logger = logging.getLogger("backup")


def write_status(*, ok: bool, message: str, next_due: float) -> None:
    temporary = STATUS_FILE.with_name(STATUS_FILE.name + ".tmp")
    temporary.write_text(json.dumps({"ok": ok, "message": message, "next_due": next_due}))
    os.replace(temporary, STATUS_FILE)


def at(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def main() -> None:
    # PID 1 ignores SIGTERM unless it says otherwise: stop at once (a backup
    # cut short leaves only a temporary file, never a listed backup).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    destination = os.environ.get("BACKUP_DEST") or "/backups"
    try:
        interval = parse_interval(os.environ.get("BACKUP_INTERVAL") or "6h")
        keep = int(os.environ.get("BACKUP_KEEP") or "28")
    except (BackupError, ValueError) as error:
        logger.error("backup service misconfigured: %s", error)
        write_status(ok=False, message=f"misconfigured: {error}", next_due=time.time())
        signal.pause()
        return
    retry = min(interval, RETRY_SECONDS)
    logger.info("backups every %s s to %s, keeping %s", f"{interval:g}", destination, keep)
    while True:
        try:
            newest = newest_backup(destination)
            due = newest.taken_at.timestamp() + interval if newest else time.time()
            if due > time.time():
                write_status(ok=True, message=f"next backup at {at(due)}", next_due=due)
                logger.info("next backup at %s", at(due))
                time.sleep(due - time.time())
                continue
            result = create_backup(destination=destination, keep=keep)
        except BackupError as error:
            logger.error("backup failed: %s (next try in %s s)", error, f"{retry:g}")
            write_status(ok=False, message=f"backup failed: {error}", next_due=time.time() + retry)
            time.sleep(retry)
            continue
        except Exception as error:
            logger.exception("backup failed")
            write_status(ok=False, message=f"backup failed: {error!r}", next_due=time.time() + retry)
            time.sleep(retry)
            continue
        for location in result.pruned:
            logger.info("pruned %s", location)
        logger.info("backup written to %s (%s bytes, %.2f s)", result.location, result.size, result.seconds)
        write_status(ok=True, message=f"last backup {result.location}", next_due=time.time() + interval)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    main()
