#!/usr/bin/env bash
# Prepare a fresh Debian 12 server (an EC2 t2.micro) to run the shortener stack:
# system updates, Docker Engine with the Compose plugin from Docker's own apt
# repository, the login user in the docker group, a swap file on small-memory
# machines, Docker started at boot.
#
# Idempotent and non-interactive: run it again at any time. As root, or with sudo:
#   sudo bash scripts/setup-ec2.sh
# provision_ec2.py passes it as the instance's user data, so it runs at first boot.
#
# Environment (all optional):
#   DOCKER_APT_URL   Docker's apt repository (default https://download.docker.com/linux/debian)
#   TARGET_USER      who gets to run docker (default: the sudo caller, else 'admin')
#   SWAP_SIZE_MB     swap file size (default 1024)
#   SWAP_UNDER_MB    add swap when memory is under this many MiB (default 2048)
#   SKIP_UPGRADE=1   skip 'apt-get upgrade'
set -euo pipefail

DOCKER_APT_URL="${DOCKER_APT_URL:-https://download.docker.com/linux/debian}"
TARGET_USER="${TARGET_USER:-${SUDO_USER:-admin}}"
SWAP_SIZE_MB="${SWAP_SIZE_MB:-1024}"
SWAP_UNDER_MB="${SWAP_UNDER_MB:-2048}"
SWAP_FILE=/swapfile
KEYRING=/etc/apt/keyrings/docker.asc
DOCKER_PACKAGES=(docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin)

export DEBIAN_FRONTEND=noninteractive
APT_OPTIONS=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

log() { printf '[setup-ec2] %s\n' "$*"; }

require_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "run as root: sudo bash $0" >&2
    exit 1
  fi
}

require_debian_12() {
  # shellcheck disable=SC1091
  . /etc/os-release
  if [ "${ID:-}" != "debian" ] || [ "${VERSION_CODENAME:-}" != "bookworm" ]; then
    log "warning: made for Debian 12 (bookworm), this is ${PRETTY_NAME:-unknown}"
  fi
}

update_system() {
  log "updating the package lists and installed packages"
  apt-get update -q
  if [ "${SKIP_UPGRADE:-0}" != "1" ]; then
    apt-get upgrade "${APT_OPTIONS[@]}"
  fi
  apt-get install "${APT_OPTIONS[@]}" --no-install-recommends ca-certificates curl rsync
}

add_docker_repository() {
  log "adding Docker's apt repository ($DOCKER_APT_URL)"
  install -m 0755 -d /etc/apt/keyrings
  curl -fsSL "$DOCKER_APT_URL/gpg" -o "$KEYRING.tmp"
  mv "$KEYRING.tmp" "$KEYRING"
  chmod a+r "$KEYRING"
  local arch codename
  arch="$(dpkg --print-architecture)"
  # shellcheck disable=SC1091
  codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
  echo "deb [arch=$arch signed-by=$KEYRING] $DOCKER_APT_URL $codename stable" > /etc/apt/sources.list.d/docker.list
  apt-get update -q
}

install_docker() {
  log "installing ${DOCKER_PACKAGES[*]}"
  apt-get install "${APT_OPTIONS[@]}" "${DOCKER_PACKAGES[@]}"
}

add_user_to_docker_group() {
  if ! id "$TARGET_USER" >/dev/null 2>&1; then
    log "no user '$TARGET_USER'; skipping the docker group (set TARGET_USER)"
    return
  fi
  getent group docker >/dev/null || groupadd --system docker
  if id -nG "$TARGET_USER" | tr ' ' '\n' | grep -qx docker; then
    log "'$TARGET_USER' is in the docker group"
  else
    usermod -aG docker "$TARGET_USER"
    log "'$TARGET_USER' added to the docker group (takes effect at the next login)"
  fi
}

memory_mb() {
  awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo
}

ensure_swap() {
  # Building the images on 1 GiB of memory runs out without swap.
  if [ "$(memory_mb)" -ge "$SWAP_UNDER_MB" ]; then
    log "$(memory_mb) MiB of memory: no swap file needed"
    return
  fi
  if [ ! -f "$SWAP_FILE" ]; then
    log "creating a ${SWAP_SIZE_MB} MiB swap file at $SWAP_FILE"
    fallocate -l "${SWAP_SIZE_MB}M" "$SWAP_FILE" 2>/dev/null \
      || dd if=/dev/zero of="$SWAP_FILE" bs=1M count="$SWAP_SIZE_MB" status=none
    chmod 600 "$SWAP_FILE"
    mkswap "$SWAP_FILE" >/dev/null
  fi
  grep -q "^$SWAP_FILE " /etc/fstab || echo "$SWAP_FILE none swap sw 0 0" >> /etc/fstab
  if swapon --show=NAME --noheadings | grep -qx "$SWAP_FILE"; then
    log "swap file active"
  elif swapon "$SWAP_FILE" 2>/dev/null; then
    log "swap file activated"
  else
    log "warning: could not activate $SWAP_FILE here (it is in /etc/fstab for the next boot)"
  fi
}

enable_docker_at_boot() {
  if [ -d /run/systemd/system ]; then
    systemctl enable --now docker.service containerd.service
    log "Docker enabled at boot and running"
  else
    log "no systemd running here: enable Docker at boot with 'systemctl enable --now docker'"
  fi
}

main() {
  require_root
  require_debian_12
  update_system
  add_docker_repository
  install_docker
  add_user_to_docker_group
  ensure_swap
  enable_docker_at_boot
  log "done: log in again, then: docker compose version"
}

main "$@"
