"""The stack under test (tests/stack's Stack or ScaleStack, the compose helpers the
tests use too) and the nginx static-308 baseline beside it."""

import itertools
import re
import secrets
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.wrk import BENCH_DIR, log
from tests.project import copy_project, free_port
from tests.stack import ScaleStack, Stack

NGINX_IMAGE = "nginx:1.28-bookworm"
# What --stack chooses: the single box, or nginx over app replicas on PostgreSQL and Redis.
STACKS = {"prod": Stack, "scale": ScaleStack}
# Each stack's compose project; the baseline container carries BASELINE_LABEL=<project>.
PROJECTS = {"prod": "shortener-bench", "scale": "shortener-bench-scale"}
BASELINE_LABEL = "com.shortener.bench-baseline"


def wait_for(url: str, *, status: int, seconds: float = 30) -> None:
    """Until `url` answers `status`; fails loudly after `seconds`."""
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answered = httpx.get(url, timeout=2).status_code
            if answered == status:
                return
            last = f"status {answered}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer {status} within {seconds:.0f} s (last: {last})")


# The app's default (shortener_site/settings.py), set explicitly (an --env
# setting may change it) so that settled_clicks knows how long to wait.
CLICK_ROLLUP_SECONDS = 10


class BenchStack:
    def __init__(
        self,
        workdir: Path,
        *,
        kind: str = "prod",
        replicas: int = 1,
        workers: int,
        fast_path: bool,
        extra_env: list[str],
        project_suffix: str = "",
    ):
        """`kind` is a key of STACKS; `workers` are uvicorn's per app container;
        `project_suffix` tells a second stack of the same kind apart (its compose
        project is PROJECTS[kind] + the suffix)."""
        directory = copy_project(workdir / "project")
        project = PROJECTS[kind] + project_suffix
        settings = {
            "WEB_CONCURRENCY": str(workers),
            "SHORTENER_REDIRECT_FAST_PATH": str(int(fast_path)),
            "SHORTENER_CLICK_ROLLUP_SECONDS": str(CLICK_ROLLUP_SECONDS),
        }
        if STACKS[kind] is ScaleStack:
            self.stack = ScaleStack(directory=directory, project=project, app_replicas=replicas)
            # Letters and digits: they become part of DATABASE_URL and REDIS_URL.
            settings |= {"POSTGRES_PASSWORD": secrets.token_hex(16), "REDIS_PASSWORD": secrets.token_hex(16)}
        else:
            self.stack = Stack(directory=directory, project=project)
        settings |= dict(setting.split("=", 1) for setting in extra_env)
        self.stack.write_env(**settings)
        self.stack.remove_leftovers()
        self.remove_baseline()  # a killed run's
        # How long a click can wait in a worker and then in the journal (settled_clicks);
        # without a flush interval set, 1 s covers the site's default (0.1 s) with room.
        self.click_delay_seconds = float(settings["SHORTENER_CLICK_ROLLUP_SECONDS"]) + float(
            settings.get("SHORTENER_CLICK_FLUSH_SECONDS", "1")
        )
        self.compose_files = list(self.stack.compose_files)
        self.base_url = self.stack.base_url
        self.baseline_url = ""
        self.api_key = ""

    def compose(self, *args: str) -> str:
        return self.stack.compose(*args).stdout

    def up(self, *, baseline: bool = True) -> None:
        """The stack, and nginx's static 308 beside it unless `baseline` is False."""
        log(f"building and starting the stack {self.stack.project}")
        self.stack.up()
        if not baseline:
            return
        baseline_port = free_port()
        self.baseline_url = f"http://127.0.0.1:{baseline_port}/"
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--rm",
                "--label",
                f"{BASELINE_LABEL}={self.stack.project}",
                "-p",
                f"127.0.0.1:{baseline_port}:80",
                "-v",
                f"{BENCH_DIR / 'nginx-static-308.conf'}:/etc/nginx/conf.d/default.conf:ro",
                NGINX_IMAGE,
            ],
            capture_output=True,
            check=True,
        )
        wait_for(self.baseline_url, status=308)

    def remove_baseline(self, *, check: bool = True) -> None:
        """nginx's static 308 (`docker run`, outside the compose project), found by its
        label: this run's, or one a killed run left. Without `check` (at teardown) a
        failure is left for the next run's removal."""
        left = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={BASELINE_LABEL}={self.stack.project}"],
            capture_output=True,
            text=True,
            check=check,
        ).stdout.split()
        if left:
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True, check=check)

    def down(self) -> None:
        self.remove_baseline(check=False)
        self.stack.down(volumes=True)

    def containers(self) -> list[str]:
        return self.compose("ps", "-q").split()

    def manage(self, *args: str) -> str:
        return self.manage_command(*args).stdout

    def manage_command(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """A manage.py command in an app container; its status too, for `check` False."""
        return self.stack.compose("exec", "-T", "app", "python", "manage.py", *args, check=check)

    def issue_api_key(self, *, attempts: int = 3) -> str:
        """The first command in a fresh process right after `up`. On a loaded
        machine its first database connection has once failed to come within the
        connection pool's 30 s (scale stack, CI; not reproduced on a quiet
        machine): it is tried again, and each failure is logged."""
        for attempt in range(1, attempts + 1):
            try:
                output = self.manage("issue_api_key", "--name", "bench")
            except AssertionError as failure:
                reason = str(failure).strip().splitlines()[-1]
                log(f"issue_api_key failed (attempt {attempt} of {attempts}): {reason}")
                if attempt == attempts:
                    raise
            else:
                self.api_key = output.split()[-1]
                return self.api_key

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30
        )

    def seed_through_api(self, count: int) -> list[str]:
        log(f"seeding {count} links through the API")
        slugs = []
        with self.api() as client:
            for i in range(count):
                response = client.post("/", json={"url": f"https://example.com/bench/seed/{i}"})
                response.raise_for_status()
                slugs.append(response.json()["short_slug"])
        return slugs

    def services(self) -> list[str]:
        """The compose service of each running container: what the memory figures add up."""
        labels = subprocess.run(
            [
                "docker",
                "inspect",
                "-f",
                '{{index .Config.Labels "com.docker.compose.service"}}',
                *self.containers(),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return sorted(labels.split())

    def error_answers(self) -> dict:
        """Why a run counted failures: nginx's answers other than 2xx and 3xx by status
        (499, wrk closing with requests in flight, left out), and the app's error lines."""
        time.sleep(1.5)  # nginx's access log buffer (flush=1s)
        statuses = Counter(re.findall(r'" ([45]\d\d) ', self.compose("logs", "--no-color", "nginx")))
        statuses.pop("499", None)
        app = self.compose("logs", "--no-color", "--tail", "5000", "app").splitlines()
        return {
            "nginx_statuses": dict(statuses),
            "app_errors": [line for line in app if re.search(r"Error|Exception|Traceback", line)][-20:],
        }

    def app_containers(self) -> list[str]:
        return self.compose("ps", "-q", "app").split()

    def settled_clicks(self, *, timeout: float = 90) -> int:
        """Total clicks once every worker has flushed and rolled its journal
        up: the same reading for longer than a click can wait in a worker's
        tally and then in the journal (click_delay_seconds)."""
        deadline = time.monotonic() + timeout
        last, since = self.total_clicks(), time.monotonic()
        while time.monotonic() - since < self.click_delay_seconds + 2:
            time.sleep(1.5)
            now = self.total_clicks()
            if now != last:
                last, since = now, time.monotonic()
            if time.monotonic() > deadline:
                raise RuntimeError(f"clicks still changing after {timeout:.0f} s (now {now})")
        return last

    def total_clicks(self) -> int:
        """Clicks of every link, as the API lists them (what an operator reads,
        whichever tables hold the counters)."""
        total = 0
        with self.api() as client:
            for page in itertools.count(1):
                response = client.get("/api/links/", params={"page": page})
                response.raise_for_status()
                body = response.json()
                total += sum(link["clicks"] for link in body["results"])
                if not body["next"]:
                    return total
