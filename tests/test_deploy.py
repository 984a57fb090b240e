"""scripts/deploy.sh end to end: a real ssh server on 127.0.0.1 whose Docker is
this machine's engine, as an EC2 host's would be."""

import os
import shutil
import stat
import subprocess
import time

import httpx
import pytest

from tests.conftest import free_port
from tests.stack import Stack, require_engine

pytestmark = pytest.mark.stack

SSHD = "/usr/sbin/sshd"


@pytest.fixture
def ssh_server(tmp_path):
    for tool in (SSHD, shutil.which("ssh"), shutil.which("rsync"), shutil.which("ssh-keygen")):
        if not tool or not os.path.exists(tool):
            pytest.skip("deploy tests need openssh-server, openssh-client and rsync (apt-get install them)")
    if os.geteuid() != 0:
        pytest.skip("the throwaway sshd runs as root")
    keys = tmp_path / "ssh"
    keys.mkdir(mode=0o700)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    (keys / "authorized_keys").write_text((keys / "client_key.pub").read_text())
    os.makedirs("/run/sshd", exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [
            SSHD,
            "-D",
            "-e",
            "-p",
            str(port),
            "-h",
            str(keys / "host_key"),
            "-o",
            "ListenAddress=127.0.0.1",
            "-o",
            f"AuthorizedKeysFile={keys / 'authorized_keys'}",
            "-o",
            f"PidFile={keys / 'sshd.pid'}",
            "-o",
            "StrictModes=no",
            "-o",
            "UsePAM=no",
            "-o",
            "PermitRootLogin=prohibit-password",
            "-o",
            "PasswordAuthentication=no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = subprocess.run(["ssh-keyscan", "-p", str(port), "127.0.0.1"], capture_output=True)
        if probe.stdout:
            break
        time.sleep(0.2)
    try:
        yield {"port": port, "key": keys / "client_key", "known_hosts": keys / "known_hosts"}
    finally:
        process.terminate()
        process.wait()


def test_deploy_copies_configures_starts_and_keeps_data_across_deploys(ssh_server, tmp_path):
    require_engine()
    # Deploy from a copy with a local .env holding a marker: it must never travel.
    source = Stack.copy_of_project(tmp_path, name="deploy-source", subnet_octet=253)
    local_marker = "LOCAL-ONLY-SECRET-MARKER"
    (source.directory / ".env").write_text(f"DJANGO_SECRET_KEY={local_marker}\n")
    (source.directory / "data").mkdir()
    (source.directory / "data" / "local.sqlite3").write_text("not for the server")
    remote_dir = tmp_path / "server-home" / "shortener"
    http_port = free_port()
    env = {
        **os.environ,
        "HTTP_PORT": str(http_port),
        "HTTP_BIND": "127.0.0.1",
        "DEPLOY_SSH_OPTS": f"-o UserKnownHostsFile={ssh_server['known_hosts']}",
    }
    command = [
        "bash",
        str(source.directory / "scripts/deploy.sh"),
        "root@127.0.0.1",
        "--key",
        str(ssh_server["key"]),
        "--port",
        str(ssh_server["port"]),
        "--dir",
        str(remote_dir),
    ]

    def deploy() -> subprocess.CompletedProcess:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)

    def compose_down():
        subprocess.run(
            ["docker", "compose", "-f", "docker-compose.prod.yml", "down", "-v"],
            cwd=remote_dir,
            capture_output=True,
            env={**os.environ, "HTTP_PORT": str(http_port)},
        )

    try:
        first = deploy()
        assert first.returncode == 0, first.stdout + first.stderr
        assert "created .env with a new secret key" in first.stdout
        assert "6 passed, 0 failed" in first.stdout

        remote_env = (remote_dir / ".env").read_text()
        secret_line = next(line for line in remote_env.splitlines() if line.startswith("DJANGO_SECRET_KEY="))
        assert len(secret_line.split("=", 1)[1]) >= 40
        assert local_marker not in remote_env
        assert stat.S_IMODE((remote_dir / ".env").stat().st_mode) == 0o600
        assert not (remote_dir / ".git").exists()
        assert not (remote_dir / "data").exists()

        base = f"http://127.0.0.1:{http_port}"
        slug = httpx.post(base + "/", json={"url": "https://example.com/kept-across-deploys"}).json()[
            "short_slug"
        ]

        second = deploy()
        assert second.returncode == 0, second.stdout + second.stderr
        assert "keeping the existing .env" in second.stdout
        assert (remote_dir / ".env").read_text() == remote_env
        redirect = httpx.get(f"{base}/{slug}")
        assert (redirect.status_code, redirect.headers["location"]) == (
            308,
            "https://example.com/kept-across-deploys",
        )
    finally:
        if remote_dir.exists():
            compose_down()


def test_deploy_fails_clearly_when_the_host_is_unreachable(tmp_path):
    if not shutil.which("ssh"):
        pytest.skip("needs openssh-client")
    result = subprocess.run(
        ["bash", "scripts/deploy.sh", "root@127.0.0.1", "--port", str(free_port())],
        env={**os.environ, "DEPLOY_SSH_OPTS": f"-o UserKnownHostsFile={tmp_path / 'kh'}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Connection refused" in result.stderr
