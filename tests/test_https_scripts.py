"""The HTTPS stack's shell scripts (run inside the nginx and certbot containers)
are shellcheck-clean; what they do is tested in tests/test_https_stack.py."""

import shutil
import subprocess

import pytest

from tests.project import PROJECT_DIR

SCRIPTS = ("nginx/entrypoint.sh", "docker/certbot.sh")


def test_https_shell_scripts_are_shellcheck_clean():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(
        ["shellcheck", "--shell=sh", "--severity=style", *(str(PROJECT_DIR / script) for script in SCRIPTS)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout
