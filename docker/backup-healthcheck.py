"""Backup container health: unhealthy when the last backup failed, or when the
next one is long overdue (the scheduler is stuck)."""

import json
import os
import sys
import time
from pathlib import Path

STATUS_FILE = Path(os.environ.get("BACKUP_STATUS_FILE", "/tmp/backup-status.json"))  # noqa: S108
# Time a backup may take beyond its due time before the scheduler counts as stuck.
OVERDUE_SECONDS = 30 * 60

try:
    status = json.loads(STATUS_FILE.read_text())
except (OSError, ValueError) as error:
    print(f"unhealthy: no backup status yet ({error})", file=sys.stderr)
    sys.exit(1)
if not status["ok"]:
    print(f"unhealthy: {status['message']}", file=sys.stderr)
    sys.exit(1)
if time.time() > status["next_due"] + OVERDUE_SECONDS:
    print(f"unhealthy: the backup due at {status['next_due']:.0f} has not happened", file=sys.stderr)
    sys.exit(1)
print(status["message"])
