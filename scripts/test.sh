#!/usr/bin/env bash
# Set up and run the whole test suite. Extra arguments go to pytest.
#
# System packages the tests use (Debian's chromium for browser tests, a
# shell linter, openssh-server and rsync for the deploy tests, wrk for the
# benchmark smoke run) are installed when this runs as root or with sudo;
# without them those tests skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(chromium shellcheck openssh-server openssh-client rsync wrk)
missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ] && command -v apt-get >/dev/null; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  if $SUDO true 2>/dev/null; then
    echo "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "warning: cannot install ${missing[*]} (not root, no sudo); their tests will skip" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt

exec .venv/bin/python -m pytest "$@"
