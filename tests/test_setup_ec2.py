"""scripts/setup-ec2.sh run for real in a Debian 12 container.

Docker's own apt repository cannot be reached from here, so the test serves a
stand-in on 127.0.0.1: a signed apt repository (throwaway GPG key) whose
docker-ce, docker-ce-cli, containerd.io, docker-buildx-plugin and
docker-compose-plugin are empty marker packages. What this covers, for real:
root and OS checks, apt-get update and upgrade against Debian's mirror, the
key download and signed-by repository entry (apt verifies the signature),
installing the five packages from that repository, the docker group and the
login user in it, the swap file (created, mode 0600, in /etc/fstab once), and
running the whole script twice. What it cannot cover: the real Docker Engine
packages, `swapon` (a container may not enable swap) and systemd starting
Docker at boot (no systemd in a container); those need a real VM.
"""

import email.utils
import hashlib
import shutil
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import PROJECT_DIR
from tests.stack import require_engine

pytestmark = pytest.mark.stack

DOCKER_PACKAGES = [
    "docker-ce",
    "docker-ce-cli",
    "containerd.io",
    "docker-buildx-plugin",
    "docker-compose-plugin",
]
IMAGE = "python:3.12-slim-bookworm"  # Debian 12, as on the EC2 instance


def build_marker_package(name: str, pool: Path, work: Path) -> Path:
    root = work / name
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/doc" / name).mkdir(parents=True)
    (root / "usr/share/doc" / name / "from-test-repository").write_text("marker\n")
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: 99.0-test\nArchitecture: all\nMaintainer: tests <tests@example.com>\n"
        f"Description: stand-in for Docker's {name}\n"
    )
    deb = pool / f"{name}_99.0-test_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True, capture_output=True
    )
    return deb


def build_signed_repository(repo: Path, work: Path) -> None:
    pool = repo / "pool"
    pool.mkdir(parents=True)
    stanzas = []
    for name in DOCKER_PACKAGES:
        deb = build_marker_package(name, pool, work)
        control = subprocess.run(
            ["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True
        ).stdout
        data = deb.read_bytes()
        stanzas.append(
            f"{control.strip()}\nFilename: pool/{deb.name}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    binary = repo / "dists/bookworm/stable/binary-amd64"
    binary.mkdir(parents=True)
    packages = "\n".join(stanzas).encode()
    (binary / "Packages").write_bytes(packages)
    release = (
        "Origin: test\nLabel: test\nSuite: bookworm\nCodename: bookworm\nComponents: stable\n"
        f"Architectures: amd64\nDate: {email.utils.formatdate(usegmt=True)}\nSHA256:\n"
        f" {hashlib.sha256(packages).hexdigest()} {len(packages)} stable/binary-amd64/Packages\n"
    )
    (repo / "dists/bookworm/Release").write_text(release)
    gnupg = work / "gnupg"
    gnupg.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--homedir", str(gnupg), "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run(
        [*gpg, "--quick-gen-key", "test repository <repo@example.com>", "ed25519", "sign", "never"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *gpg,
            "--clearsign",
            "-o",
            str(repo / "dists/bookworm/InRelease"),
            str(repo / "dists/bookworm/Release"),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run([*gpg, "--armor", "--export", "-o", str(repo / "gpg")], check=True, capture_output=True)


@pytest.fixture
def docker_repository(tmp_path):
    require_engine()
    for tool, package in (("gpg", "gnupg"), ("dpkg-deb", "dpkg")):
        if shutil.which(tool) is None:
            pytest.skip(f"the signed stand-in repository needs {tool} (apt-get install {package})")
    repo = tmp_path / "repo"
    build_signed_repository(repo, tmp_path / "build")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(repo)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


CHECKS = r"""
set -e
trap 'echo "exit=$?"' EXIT
useradd --create-home admin
bash /scripts/setup-ec2.sh
echo "=== second run ==="
bash /scripts/setup-ec2.sh
echo "=== checks ==="
for p in docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin; do
  echo "installed $p $(dpkg-query -W -f='${Version}' "$p")"
done
echo "list $(cat /etc/apt/sources.list.d/docker.list)"
echo "groups $(id -nG admin)"
echo "swapmode $(stat -c %a /swapfile)"
echo "fstab $(grep -c '^/swapfile ' /etc/fstab)"
echo "keyring $(head -1 /etc/apt/keyrings/docker.asc)"
"""


def test_setup_script_prepares_debian_12(docker_repository):
    require_engine()
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "host",
            "-v",
            f"{PROJECT_DIR / 'scripts'}:/scripts:ro",
            "-e",
            f"DOCKER_APT_URL={docker_repository}",
            "-e",
            "TARGET_USER=admin",
            # Force the small-machine path on this 24 GiB host; keep the file small.
            "-e",
            "SWAP_UNDER_MB=99999999",
            "-e",
            "SWAP_SIZE_MB=16",
            IMAGE,
            "bash",
            "-c",
            CHECKS,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout
    assert result.returncode == 0 and output.rstrip().endswith("exit=0"), (
        output[-3000:] + result.stderr[-3000:]
    )
    checks = output.split("=== checks ===", 1)[1].splitlines()
    for package in DOCKER_PACKAGES:
        assert f"installed {package} 99.0-test" in checks
    docker_list = next(line for line in checks if line.startswith("list "))
    assert f"signed-by=/etc/apt/keyrings/docker.asc] {docker_repository} bookworm stable" in docker_list
    assert "docker" in next(line for line in checks if line.startswith("groups ")).split()
    assert "swapmode 600" in checks
    assert "fstab 1" in checks  # once, after two runs
    assert "keyring -----BEGIN PGP PUBLIC KEY BLOCK-----" in checks
    second_run = output.split("=== second run ===", 1)[1]
    assert "'admin' is in the docker group" in second_run


def test_setup_script_refuses_to_run_without_root():
    require_engine()
    # The exit status is echoed from inside: it does not depend on how the
    # engine reports a removed container's status.
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--user",
            "nobody",
            "-v",
            f"{PROJECT_DIR / 'scripts'}:/scripts:ro",
            IMAGE,
            "bash",
            "-c",
            "bash /scripts/setup-ec2.sh; echo exit=$?",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "exit=1" in result.stdout
    assert "run as root" in result.stderr
