"""Django's settings in HTTPS mode (PUBLIC_BASE_URL on https): `check --deploy`
clean, secure cookies, the trusted origin. What nginx does in that mode is
tested through the real stack in tests/test_https_stack.py."""

import secrets
import string
import subprocess
import sys

from tests.conftest import PROJECT_DIR, site_env

HTTPS_VALUES = {
    "DJANGO_DEBUG": "0",
    "DJANGO_ALLOWED_HOSTS": "short.example",
    "PUBLIC_BASE_URL": "https://short.example",
}


def random_secret_key() -> str:
    # 50 characters from the alphabet of deploy.sh's keys (secrets.token_urlsafe).
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(secrets.choice(alphabet) for _ in range(50))


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def check_deploy(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_prints_no_security_warning_in_https_mode(tmp_path):
    env = site_env(tmp_path, DJANGO_SECRET_KEY=random_secret_key(), **HTTPS_VALUES)
    result = check_deploy(env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "security.W" not in output
    assert "System check identified no issues" in output


def test_check_deploy_names_the_four_https_warnings_without_https(tmp_path):
    # The same production values on plain HTTP: what HTTPS mode answers.
    env = site_env(
        tmp_path,
        DJANGO_SECRET_KEY=random_secret_key(),
        DJANGO_DEBUG="0",
        DJANGO_ALLOWED_HOSTS="short.example",
        PUBLIC_BASE_URL="http://short.example",
    )
    output = check_deploy(env).stderr
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in output
    assert output.count("security.W") == 4, output


def test_https_mode_makes_cookies_secure_and_trusts_the_public_origin(tmp_path):
    env = site_env(
        tmp_path,
        DJANGO_SECRET_KEY=random_secret_key(),
        DJANGO_CSRF_TRUSTED_ORIGINS="https://admin.short.example",
        **HTTPS_VALUES,
    )
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'shortener_site.settings'; django.setup();"
        "from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.CSRF_TRUSTED_ORIGINS,"
        " s.SECURE_PROXY_SSL_HEADER)"
    )
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == (
        "True True ['https://admin.short.example', 'https://short.example'] None"
    )


def test_plain_http_keeps_cookies_usable_over_http(tmp_path):
    env = site_env(tmp_path, DJANGO_SECRET_KEY=random_secret_key(), PUBLIC_BASE_URL="http://short.example")
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'shortener_site.settings'; django.setup();"
        "from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.CSRF_TRUSTED_ORIGINS)"
    )
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "False False []"
