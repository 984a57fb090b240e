"""DATABASE_URL's own options reach Django's connections and the fast path's alike."""

import json
import os
import subprocess
import sys

from tests.project import PROJECT_DIR

SHOW = """
import json, django
django.setup()
from django.conf import settings
from links.fastpath import links_from_settings
options = settings.DATABASES["default"]["OPTIONS"]
print(json.dumps({"options": options, "fast_path": links_from_settings().conninfo}))
"""


def test_ssl_options_in_database_url_are_kept_everywhere():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shortener_site.settings",
        "DATABASE_URL": "postgres://app:secret@db.example:5432/short?sslmode=verify-full&sslrootcert=/etc/rds.pem",
    }
    result = subprocess.run(
        [sys.executable, "-c", SHOW], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, check=True
    )
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert shown["options"]["sslmode"] == "verify-full"
    assert shown["options"]["sslrootcert"] == "/etc/rds.pem"
    assert shown["options"]["pool"]["max_size"] == 4
    assert "sslmode=verify-full" in shown["fast_path"]
    assert "sslrootcert=/etc/rds.pem" in shown["fast_path"]
    assert "host=db.example" in shown["fast_path"]
