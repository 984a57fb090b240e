"""The production stack (docker-compose.prod.yml), or the scale stack
(docker-compose.scale.yml), brought up from a copy of the project."""

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from tests.project import COMPOSE_FILE, compose_environment, copy_project, free_port


def engine_problem() -> str | None:
    """Why no stack test can run here, or None when a Docker engine answers."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "no Docker engine answers (start Docker, or run .ci/run, which sets up the sandbox engine)"
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        return "no 'docker compose' plugin"
    return None


def remove_project_leftovers(project: str, *, timeout: float = 600) -> None:
    """A run killed before its teardown leaves its compose project's containers,
    networks and named volumes behind (a certificate from another pebble, another
    run's links): every stack starts from nothing. Compose finds them by the
    project's name alone when it finds no compose file (none in an empty temporary
    folder or the folders above it), so the .env the files need is not read."""
    with tempfile.TemporaryDirectory() as nowhere:
        result = subprocess.run(
            ["docker", "compose", "-p", project, "down", "--volumes", "--remove-orphans"],
            cwd=nowhere,
            env={name: value for name, value in os.environ.items() if not name.startswith("COMPOSE_")},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if result.returncode != 0:
        raise AssertionError(
            f"removing what earlier runs left of {project} failed:\n{result.stdout}\n{result.stderr}"
        )


def require_engine() -> None:
    problem = engine_problem()
    if problem:
        pytest.skip(f"container stack tests need Docker: {problem}")


@dataclass
class Stack:
    """One compose project in its own folder and on its own loopback port (its private
    network is the engine's choice, so stacks run side by side)."""

    directory: Path
    project: str
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(40))
    http_port: int = field(default_factory=free_port)

    @classmethod
    def copy_of_project(cls, tmp_path: Path, *, name: str) -> "Stack":
        directory = copy_project(tmp_path / name)
        stack = cls(directory=directory, project=f"shortener-test-{name}")
        stack.write_env()
        stack.remove_leftovers()
        return stack

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def write_env(self, **extra: str) -> None:
        values = {
            "DJANGO_SECRET_KEY": self.secret_key,
            "DJANGO_ALLOWED_HOSTS": "*",
            # nginx's limit is under test here; the app's own throttle has tests of its own.
            "SHORTENER_ANON_CREATE_RATE": "10000/min",
            **extra,
        }
        (self.directory / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))

    def environment(self) -> dict:
        return compose_environment(http_port=self.http_port)

    # The compose files this stack is made of, in order (overrides after the base).
    compose_files: ClassVar[tuple[str, ...]] = (COMPOSE_FILE,)
    compose_timeout: ClassVar[float] = 600

    def compose(
        self, *args: str, check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess:
        files = [option for name in self.compose_files for option in ("-f", name)]
        result = subprocess.run(
            ["docker", "compose", *files, "-p", self.project, *args],
            cwd=self.directory,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout or self.compose_timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def up(self, *services: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.compose("up", "-d", "--build", "--wait", *services, check=check)

    def down(self, *, volumes: bool = False) -> None:
        self.compose("down", "--remove-orphans", *(["-v"] if volumes else []), check=False)

    def remove_leftovers(self) -> None:
        remove_project_leftovers(self.project, timeout=self.compose_timeout)

    def container(self, service: str) -> dict:
        """`docker inspect` of the service's container (running or exited)."""
        ids = self.compose("ps", "-a", "-q", service).stdout.split()
        assert len(ids) == 1, f"expected one {service} container, found {ids}"
        return json.loads(
            subprocess.run(["docker", "inspect", ids[0]], capture_output=True, text=True, check=True).stdout
        )[0]

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service).stdout


@dataclass
class ScaleStack(Stack):
    """docker-compose.scale.yml: nginx over `app_replicas` app replicas on PostgreSQL
    and Redis (its .env also needs POSTGRES_PASSWORD and REDIS_PASSWORD)."""

    compose_files: ClassVar[tuple[str, ...]] = ("docker-compose.scale.yml",)
    app_replicas: int = 3

    def environment(self) -> dict:
        return {**super().environment(), "APP_REPLICAS": str(self.app_replicas)}
