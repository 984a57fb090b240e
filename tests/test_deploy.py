"""scripts/deploy.sh end to end: a real ssh server on 127.0.0.1 whose Docker is
this machine's engine, as an EC2 host's would be."""

import os
import re
import shutil
import stat
import subprocess
import time

import httpx
import pytest

from tests.conftest import PROJECT_DIR, free_port
from tests.stack import Stack, remove_project_leftovers, require_engine

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
    source = Stack.copy_of_project(tmp_path, name="deploy-source")
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
        # The first deploy names the server: no "*" in DJANGO_ALLOWED_HOSTS.
        assert "DJANGO_ALLOWED_HOSTS=127.0.0.1" in remote_env.splitlines()
        assert f"PUBLIC_BASE_URL=http://127.0.0.1:{http_port}" in remote_env.splitlines()
        assert stat.S_IMODE((remote_dir / ".env").stat().st_mode) == 0o600
        assert not (remote_dir / ".git").exists()
        assert not (remote_dir / "data").exists()

        base = f"http://127.0.0.1:{http_port}"
        created = httpx.post(base + "/", json={"url": "https://example.com/kept-across-deploys"}).json()
        slug = created["short_slug"]
        assert created["short_url"] == f"{base}/{slug}"

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


def test_the_manual_scp_route_in_docs_deploy_ec2_works_as_written(ssh_server, tmp_path):
    """docs/deploy-ec2.md's "By hand" block, run twice against the throwaway sshd: only
    the host, key, port, folders and the stack's own port/network/name filled in."""
    require_engine()
    guide = (PROJECT_DIR / "docs" / "deploy-ec2.md").read_text()
    block = re.search(r"## 3b\..*?```bash\n(.*?)```", guide, flags=re.DOTALL)[1]
    source = Stack.copy_of_project(tmp_path, name="scp-source")
    # What must stay behind: the local .env (Stack wrote one, with its own secret), git, data.
    (source.directory / ".git").mkdir()
    (source.directory / "data").mkdir()
    (source.directory / "data" / "local.env").write_text("DJANGO_DEBUG=1\n")
    remote_home = tmp_path / "server-home"
    remote_home.mkdir()
    key, port = ssh_server["key"], ssh_server["port"]
    ssh_options = f"-o UserKnownHostsFile={ssh_server['known_hosts']} -o StrictHostKeyChecking=accept-new"
    for written, filled_in in (
        ("scp -i ~/.ssh/shortener-key.pem", f"scp -i {key} -P {port} {ssh_options}"),
        ("ssh -i ~/.ssh/shortener-key.pem", f"ssh -i {key} -p {port} {ssh_options}"),
        ("HOST=ec2-…compute.amazonaws.com", "HOST=127.0.0.1"),
        ("admin@", "root@"),
        ("~/shortener", f"{remote_home}/shortener"),
        ("/tmp/shortener.tar.gz", f"{tmp_path}/shortener.tar.gz"),
        (
            "docker compose",
            f"HTTP_PORT={source.http_port} HTTP_BIND=127.0.0.1 "
            "COMPOSE_PROJECT_NAME=shortener-test-scp docker compose",
        ),
        ("http://$HOST/", f"http://$HOST:{source.http_port}/"),
    ):
        assert written in block, written
        block = block.replace(written, filled_in)
    remote = remote_home / "shortener"

    def run_the_block() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=source.directory,
            capture_output=True,
            text=True,
            timeout=900,
        )

    try:
        first = run_the_block()
        assert first.returncode == 0, first.stdout + first.stderr
        assert "HTTP/1.1 200 OK" in first.stdout
        server_env = (remote / ".env").read_text()
        assert source.secret_key not in server_env
        secrets_set = [line for line in server_env.splitlines() if line.startswith("DJANGO_SECRET_KEY=")]
        assert len(secrets_set[-1].split("=", 1)[1]) >= 40
        assert "DJANGO_ALLOWED_HOSTS=127.0.0.1" in server_env.splitlines()
        assert stat.S_IMODE((remote / ".env").stat().st_mode) == 0o600
        for left_behind in (".git", "data", ".venv"):
            assert not (remote / left_behind).exists(), left_behind

        base = f"http://127.0.0.1:{source.http_port}"
        slug = httpx.post(base + "/", json={"url": "https://example.com/by-hand"}).json()["short_slug"]
        again = run_the_block()
        assert again.returncode == 0, again.stdout + again.stderr
        assert (remote / ".env").read_text() == server_env
        redirect = httpx.get(f"{base}/{slug}")
        assert (redirect.status_code, redirect.headers["location"]) == (308, "https://example.com/by-hand")
    finally:
        subprocess.run(
            ["docker", "compose", "-f", "docker-compose.prod.yml", "down", "-v"],
            cwd=remote,
            env=source.environment() | {"COMPOSE_PROJECT_NAME": "shortener-test-scp"},
            capture_output=True,
        )


def test_deploy_with_a_domain_serves_https_and_later_deploys_keep_it(ssh_server, tmp_path):
    """`--domain` end to end: the server's .env names the domain, certbot gets the
    certificate from pebble (a test compose file layered on the server's stack),
    nginx serves HTTPS for it; a later deploy without the option keeps all that."""
    from tests.test_https_stack import DOMAIN, https, pebble_root, tls_context

    require_engine()
    source = Stack.copy_of_project(tmp_path, name="deploy-https-source")
    remote_dir = tmp_path / "server-home" / "shortener"
    http_port, https_port, pebble_port = free_port(), free_port(), free_port()
    compose_settings = {
        "COMPOSE_PROJECT_NAME": "shortener-test-deploy-https",
        "ACME_NET": "10.77.246",
        "PEBBLE_PORT": str(pebble_port),
    }
    # The stack deploy.sh brings up is named here, not by copy_of_project.
    remove_project_leftovers(compose_settings["COMPOSE_PROJECT_NAME"])
    env = {
        **os.environ,
        "HTTP_PORT": str(http_port),
        "HTTP_BIND": "127.0.0.1",
        "HTTPS_PORT": str(https_port),
        "HTTPS_BIND": "127.0.0.1",
        "DEPLOY_SSH_OPTS": f"-o UserKnownHostsFile={ssh_server['known_hosts']}",
        "DEPLOY_COMPOSE_FILES": "docker-compose.pebble.yml",
        "DEPLOY_COMPOSE_ENV": " ".join(f"{name}={value}" for name, value in compose_settings.items()),
    }
    ssh = ["root@127.0.0.1", "--key", str(ssh_server["key"]), "--port", str(ssh_server["port"])]
    deploy_script = str(source.directory / "scripts/deploy.sh")
    https_options = [
        "--domain",
        DOMAIN,
        "--email",
        f"ops@{DOMAIN}",
        "--acme-server",
        "https://pebble:14000/dir",
    ]
    compose_files = [
        "-f",
        "docker-compose.prod.yml",
        "-f",
        "docker-compose.https.yml",
        "-f",
        "docker-compose.pebble.yml",
    ]
    compose_env = {**env, **compose_settings}

    def deploy(*options: str) -> subprocess.CompletedProcess:
        command = ["bash", deploy_script, *ssh, "--dir", str(remote_dir), *options, "--no-smoke-test"]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)

    def compose(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", "compose", *compose_files, *args],
            cwd=remote_dir,
            env=compose_env,
            capture_output=True,
            text=True,
        )

    try:
        first = deploy(*https_options)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "created .env with a new secret key" in first.stdout
        assert "HTTPS is served for short.example" in first.stdout
        assert "deployed: https://short.example" in first.stdout
        server_env = (remote_dir / ".env").read_text().splitlines()
        for line in (
            "DJANGO_ALLOWED_HOSTS=short.example",
            "PUBLIC_BASE_URL=https://short.example",
            "HTTPS_DOMAIN=short.example",
            "ACME_EMAIL=ops@short.example",
            "ACME_SERVER=https://pebble:14000/dir",
        ):
            assert line in server_env, line

        minica = compose("exec", "-T", "certbot", "cat", "/pebble-certs/pebble.minica.pem").stdout
        root = pebble_root(pebble_port, minica)
        with httpx.Client(
            base_url=f"https://127.0.0.1:{https_port}",
            verify=tls_context(root, alpn=False),
            headers={"Host": DOMAIN},
        ) as client:
            created = https(client, "POST", "/", json={"url": "https://example.com/deployed-https"})
            assert created.status_code == 201, created.text
            slug = created.json()["short_slug"]
            assert created.json()["short_url"] == f"https://{DOMAIN}/{slug}"
        plain = httpx.get(f"http://127.0.0.1:{http_port}/{slug}?via=http", headers={"Host": DOMAIN})
        assert (plain.status_code, plain.headers["location"]) == (308, f"https://{DOMAIN}/{slug}?via=http")

        second = deploy()
        assert second.returncode == 0, second.stdout + second.stderr
        assert "keeping the existing .env" in second.stdout
        assert "HTTPS is served for short.example" in second.stdout
        assert (remote_dir / ".env").read_text().splitlines() == server_env
        with httpx.Client(
            base_url=f"https://127.0.0.1:{https_port}",
            verify=tls_context(root, alpn=False),
            headers={"Host": DOMAIN},
        ) as client:
            redirect = https(client, "GET", f"/{slug}")
        assert (redirect.status_code, redirect.headers["location"]) == (
            308,
            "https://example.com/deployed-https",
        )
    finally:
        if remote_dir.exists():
            compose("down", "-v", "--remove-orphans")


def test_deploy_refuses_a_domain_under_amazonaws_com():
    result = subprocess.run(
        [
            "bash",
            "scripts/deploy.sh",
            "admin@ec2-1-2-3-4.compute-1.amazonaws.com",
            "--domain",
            "ec2-1-2-3-4.compute-1.amazonaws.com",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "Let's Encrypt does not issue certificates for names under amazonaws.com" in result.stderr
