"""README.md's shell commands, run as written in a fresh copy of the project, in the order
a new user meets them: the local ones against `bash scripts/run_local.sh`, the container
ones against the stack they start. Every ```bash block of the README is listed below
(BLOCKS); a block that is not is a failure, so a new command cannot go untested silently.

What the test fills in, as a reader would: the port (a free one instead of 8000 or 80),
the example slug and key (the ones the commands before printed), and, for the container
stacks, their own project names, ports and networks, so they never meet other stacks."""

import json
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_until_up
from tests.project import PROJECT_DIR, copy_project, free_port
from tests.stack import require_engine

README = PROJECT_DIR / "README.md"

RUN_LOCAL = "local"
RUN_STACK = "stack"
# Every bash block of README.md by the start of its first line: run here (RUN_LOCAL, RUN_STACK),
# or why not.
BLOCKS = {
    "bash scripts/run_local.sh": RUN_LOCAL,
    "bash scripts/test.sh": "the test run itself: .ci/run runs it on a fresh Debian 12 container",
    "curl -i -X POST http://127.0.0.1:8000/ -H 'Content-Type: application/json' \\": RUN_LOCAL,
    "curl -X POST http://127.0.0.1:8000/ -H 'Content-Type: application/json' \\": RUN_LOCAL,
    "curl -o launch.png http://127.0.0.1:8000/launch/qr.png": RUN_LOCAL,
    ".venv/bin/python manage.py issue_api_key --name my-script": RUN_LOCAL,
    'curl -H "Authorization: Bearer $KEY" \'http://127.0.0.1:8000/api/links/?search=': RUN_LOCAL,
    "cp .env.example .env": RUN_STACK,
    "docker compose -f docker-compose.prod.yml logs -f app": RUN_STACK,
    "COMPOSE_PROJECT_NAME=shortener-staging HTTP_PORT=8081 \\": RUN_STACK,
    'python3 scripts/provision_ec2.py up --ssh-cidr "$(curl -s https://checkip.amazonaws.com)/32"': (
        "needs an AWS account: tests/test_ec2_kit.py and tests/test_deploy.py run the kit locally"
    ),
    ".venv/bin/python bench/run.py           # about 15 minutes": (
        "minutes of load: tests/test_bench_smoke.py runs the --smoke line"
    ),
    ".venv/bin/python manage.py createsuperuser": RUN_LOCAL,
    "DJANGO_SUPERUSER_USERNAME=admin DJANGO_SUPERUSER_PASSWORD='…' DJANGO_SUPERUSER_EMAIL=": RUN_LOCAL,
}
# Single commands inside run blocks that are not run, and why.
NOT_RUN = {
    "xdg-open ": "opens a desktop browser",
    ".venv/bin/python manage.py createsuperuser\n": "asks for a password at a prompt",
    "docker compose -f docker-compose.prod.yml logs -f app": "follows the log until Ctrl+C",
    "docker compose -f docker-compose.prod.yml exec app python manage.py createsuperuser\n": (
        "asks for a password at a prompt"
    ),
}


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL)


def commands(block: str) -> list[tuple[str, list[str]]]:
    """(command, the `# ...` lines that follow it: its expected output), continuation lines joined."""
    result: list[tuple[str, list[str]]] = []
    pending = ""
    for line in block.splitlines():
        if pending:
            pending += "\n" + line
        elif line.startswith("#"):
            if result:
                result[-1][1].append(line[1:].strip())
            continue
        elif line.strip():
            pending = line
        if pending and not pending.endswith("\\"):
            result.append((pending + "\n", []))
            pending = ""
    return result


def block_kind(block: str) -> str:
    first = block.splitlines()[0]
    kinds = [kind for start, kind in BLOCKS.items() if first.startswith(start)]
    assert kinds, f"README.md has a new command block; list it in {__file__}'s BLOCKS: {first!r}"
    return kinds[0]


def new_user_environment() -> dict:
    """This machine's environment without the project's settings (the test suite's included)."""
    prefixes = ("DJANGO_", "SHORTENER_", "SQLITE_", "COMPOSE_", "HTTP_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


@dataclass
class Reader:
    """Runs commands as a reader of the README would type them, one at a time."""

    cwd: Path
    env: dict
    fill_in: dict[str, str]
    ran: list[str] = field(default_factory=list)

    def run_block(self, block: str) -> list[tuple[str, str]]:
        outputs = []
        for command, expected in commands(block):
            if any(command.startswith(prefix) for prefix in NOT_RUN):
                continue
            for placeholder, value in self.fill_in.items():
                command = command.replace(placeholder, value)
            assignment = re.fullmatch(r"([A-Z_]+)=(\S+)\s*(#.*)?\n", command)
            if assignment:
                self.env[assignment[1]] = assignment[2]
                continue
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert result.returncode == 0, f"{command}\nfailed:\n{result.stdout}\n{result.stderr}"
            check_expected_output(command, result.stdout, expected)
            self.learn(command, result.stdout)
            self.ran.append(command.strip())
            outputs.append((command, result.stdout))
        return outputs

    def learn(self, command: str, output: str) -> None:
        slug = re.search(r'"short_slug":\s*"([^"]+)"', output)
        if slug and "Xk3p9Qa" not in self.fill_in:
            self.fill_in["Xk3p9Qa"] = slug[1]
        if "issue_api_key" in command:
            self.fill_in["shk_…"] = output.split()[-1]


def check_expected_output(command: str, output: str, expected: list[str]) -> None:
    """The README's `# HTTP/1.1 …`, `# header: value` and `# {json}` lines after a command."""
    lines = [line.strip() for line in output.splitlines()]
    if not any("error" in line for line in expected) and lines and lines[-1].startswith("{"):
        # An answer the README does not announce as an error must not be one (a 401, a 400).
        assert "error" not in json.loads(lines[-1]), f"{command}: {output}"
    for line in expected:
        if line.startswith("HTTP/"):
            assert line in lines, f"{command}: expected {line!r}, got:\n{output}"
        elif line.startswith("{"):
            promised, got = json.loads(line), json.loads(lines[-1])
            if "error" in promised:
                assert got == promised, command
            else:
                assert got.keys() == promised.keys(), command
        elif re.fullmatch(r"[a-z-]+: .+", line):
            assert line.lower() in [header.lower() for header in lines], f"{command}: expected {line!r}"


def fresh_copy(tmp_path: Path) -> Path:
    project = copy_project(tmp_path / "shortener")
    # The copy uses this checkout's installed .venv (run_local.sh's pip then has nothing to fetch:
    # tests reach no network). Creating it from nothing is what .ci/run's fresh container does.
    (project / ".venv").symlink_to(PROJECT_DIR / ".venv")
    return project


def test_every_bash_block_of_the_readme_is_listed_here():
    kinds = [block_kind(block) for block in bash_blocks()]
    assert RUN_LOCAL in kinds and RUN_STACK in kinds


def test_the_local_commands_work_as_written_after_run_local(tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("the README's commands use curl (apt-get install curl)")
    project = fresh_copy(tmp_path)
    port = free_port()
    env = {**new_user_environment(), "PORT": str(port)}
    log = (tmp_path / "run_local.log").open("w")
    server = subprocess.Popen(
        ["bash", "scripts/run_local.sh"],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", timeout=120, process=server)
        reader = Reader(
            cwd=project, env=new_user_environment(), fill_in={"127.0.0.1:8000": f"127.0.0.1:{port}"}
        )
        for block in bash_blocks():
            if block_kind(block) == RUN_LOCAL and not block.startswith("bash scripts/run_local.sh"):
                reader.run_block(block)
        assert (project / "launch.png").read_bytes().startswith(b"\x89PNG")
        check_local_site(reader, port)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    # What ran, for the closing note (pytest -rA shows it).
    print("\n".join(["README commands run:", "bash scripts/run_local.sh", *reader.ran]))


def check_local_site(reader: Reader, port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    users = subprocess.run(
        [
            ".venv/bin/python",
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            "from django.contrib.auth.models import User; "
            "print(User.objects.get(username='admin').is_superuser)",
        ],
        cwd=reader.cwd,
        env=reader.env,
        capture_output=True,
        text=True,
    )
    assert users.stdout.strip() == "True", users.stderr
    # The management commands ran on the local site's own database (data/), with its settings.
    assert (reader.cwd / "data" / "shortener.sqlite3").exists()
    # The local (DEBUG) site answers client errors with the same JSON as production.
    for args, status, error in (
        ([f"{base}/no/such/page"], 404, "Not found"),
        (["-X", "PUT", f"{base}/"], 405, "Method not allowed"),
        # A method no parser knows: the same JSON 405 as nginx answers in production.
        (["-X", "FOO", f"{base}/"], 405, "Method not allowed"),
    ):
        result = subprocess.run(
            ["curl", "-s", "-w", "\n%{http_code} %{content_type}", *args], capture_output=True, text=True
        )
        body, meta = result.stdout.rsplit("\n", 1)
        assert meta.split()[0] == str(status) and meta.split()[1].startswith("application/json"), (
            result.stdout
        )
        if error:
            assert json.loads(body) == {"error": error}
        else:
            assert "error" in json.loads(body)


@pytest.mark.stack
def test_the_container_commands_work_as_written_and_two_stacks_run_side_by_side(tmp_path):
    require_engine()
    project = fresh_copy(tmp_path)
    # A local settings file (DEBUG on) in the copy: it must not reach the images.
    (project / "data").mkdir()
    (project / "data" / "local.env").write_text("DJANGO_DEBUG=1\n")
    first_port, second_port = free_port(), free_port()
    env = {
        **new_user_environment(),
        "COMPOSE_PROJECT_NAME": "shortener-readme",
        "HTTP_PORT": str(first_port),
        "HTTP_BIND": "127.0.0.1",
    }
    reader = Reader(
        cwd=project,
        env=env,
        fill_in={
            "http://127.0.0.1/": f"http://127.0.0.1:{first_port}/",
            "shortener-staging": "shortener-readme-staging",
            "HTTP_PORT=8081": f"HTTP_PORT={second_port}",
        },
    )
    compose = ["docker", "compose", "-f", "docker-compose.prod.yml"]
    second = {**env, "COMPOSE_PROJECT_NAME": "shortener-readme-staging"}
    try:
        for block in bash_blocks():
            if block_kind(block) == RUN_STACK and not block.startswith("COMPOSE_PROJECT_NAME="):
                outputs = reader.run_block(block)
        # `down` kept the data: up again, and the key printed inside the container works through nginx.
        subprocess.run(
            [*compose, "up", "-d", "--wait"], cwd=project, env=env, check=True, capture_output=True
        )
        key = next(out for command, out in outputs if "issue_api_key" in command).split()[-1]
        first_base = f"http://127.0.0.1:{first_port}"
        listed = httpx.get(f"{first_base}/api/links/", headers={"Authorization": f"Bearer {key}"})
        assert listed.status_code == 200
        # The README's "second stack", beside the first.
        for block in bash_blocks():
            if block.startswith("COMPOSE_PROJECT_NAME="):
                reader.run_block(block)
        second_base = f"http://127.0.0.1:{second_port}"
        made = httpx.post(f"{first_base}/", json={"url": "https://example.com/first-only"}).json()
        assert httpx.get(f"{first_base}/{made['short_slug']}").status_code == 308
        # Its own volume: the first stack's link is not there.
        assert httpx.get(f"{second_base}/{made['short_slug']}").status_code == 404
        assert httpx.get(f"{second_base}/").status_code == 200
        # Its own images: named after each project, never shared.
        images = {}
        for name, environment in (("first", env), ("second", second)):
            listing = subprocess.run(
                [*compose, "images", "--format", "json"],
                cwd=project,
                env=environment,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            images[name] = {entry["Repository"] for entry in parse_json_lines(listing)}
        assert images["first"] >= {"shortener-readme-app", "shortener-readme-migrate"}, images
        assert images["second"] >= {"shortener-readme-staging-app", "shortener-readme-staging-migrate"}, (
            images
        )
        # data/local.env never reached the image: the app runs with DEBUG off.
        debug = subprocess.run(
            [
                *compose,
                "exec",
                "-T",
                "app",
                "sh",
                "-c",
                "ls /app; python manage.py shell --no-imports -c "
                "'from django.conf import settings; print(settings.DEBUG)'",
            ],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert "data" not in debug and debug[-1] == "False"
    finally:
        for environment in (env, second):
            subprocess.run(
                [*compose, "down", "-v", "--remove-orphans"],
                cwd=project,
                env=environment,
                capture_output=True,
                timeout=300,
            )
    print("\n".join(["README container commands run:", *reader.ran]))


def parse_json_lines(text: str) -> list[dict]:
    text = text.strip()
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]
