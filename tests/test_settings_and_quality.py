import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_DIR, site_env
from tests.project import copy_project


def run_manage(*args, env):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=PROJECT_DIR, env=env, capture_output=True, text=True
    )


def test_production_without_a_secret_key_fails_fast_with_a_clear_message(tmp_path):
    env = site_env(tmp_path)
    env.pop("DJANGO_SECRET_KEY")
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_debug_mode_runs_without_a_secret_key(tmp_path):
    env = site_env(tmp_path, DJANGO_DEBUG="1")
    env.pop("DJANGO_SECRET_KEY")
    assert run_manage("check", env=env).returncode == 0


def test_manage_check_is_clean(tmp_path):
    result = run_manage("check", "--fail-level", "WARNING", env=site_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_migrations_are_up_to_date(tmp_path):
    result = run_manage("makemigrations", "--check", "--dry-run", env=site_env(tmp_path))
    assert result.returncode == 0, result.stdout


def test_collectstatic_needs_no_database(tmp_path):
    env = site_env(
        tmp_path,
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
        SQLITE_PATH="/nonexistent-dir/never/created.sqlite3",
    )
    env["SHORTENER_DATA_DIR"] = str(tmp_path / "data")
    result = run_manage("collectstatic", "--noinput", env=env)
    # The settings may create the folder only where they can; the database is never opened.
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "static").glob("admin/css/base.*.css"))


def test_ruff_lint_and_format_are_clean():
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=PROJECT_DIR, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout
    fmt = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stdout


def new_user_environment() -> dict:
    """This machine's environment without any of the project's settings (the tests' own included)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SHORTENER_", "SQLITE_"))}


def debug_in(project: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            "from django.conf import settings; print(settings.DEBUG)",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )


def test_run_local_settings_file_turns_debug_on_only_where_the_environment_says_nothing(tmp_path):
    project = copy_project(tmp_path / "checkout")
    assert "DJANGO_SECRET_KEY is not set" in debug_in(project, new_user_environment()).stderr
    (project / "data").mkdir()
    (project / "data" / "local.env").write_text("DJANGO_DEBUG=1\n")
    local = debug_in(project, new_user_environment())
    assert (local.returncode, local.stdout.strip()) == (0, "True"), local.stderr
    # The environment always wins: a container's .env, the test suite's settings.
    production = debug_in(project, {**new_user_environment(), "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "s"})
    assert (production.returncode, production.stdout.strip()) == (0, "False"), production.stderr


def test_the_schema_builds_without_warnings_and_every_keyed_endpoint_asks_for_the_key(tmp_path):
    schema_file = tmp_path / "schema.json"
    result = run_manage(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--format",
        "openapi-json",
        "--file",
        str(schema_file),
        env=site_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "could not resolve" not in result.stderr
    schema = json.loads(schema_file.read_text())
    assert schema["components"]["securitySchemes"]["BearerAPIKey"]["scheme"] == "bearer"
    keyed = {
        (method.upper(), path): operation.get("security")
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if path.startswith("/api/links/")
    }
    assert len(keyed) == 4  # list, detail, change, delete
    assert all(security == [{"BearerAPIKey": []}] for security in keyed.values()), keyed
    # POST / takes the key or none, the key first (Postman's converter uses the first).
    assert schema["paths"]["/"]["post"]["security"] == [{"BearerAPIKey": []}, {}]
    private = run_manage(
        "spectacular",
        "--format",
        "openapi-json",
        "--file",
        str(tmp_path / "private.json"),
        env=site_env(tmp_path, SHORTENER_REQUIRE_API_KEY="1"),
    )
    assert private.returncode == 0, private.stderr
    private_schema = json.loads((tmp_path / "private.json").read_text())
    assert private_schema["paths"]["/"]["post"]["security"] == [{"BearerAPIKey": []}]
