"""The stack under test (tests/stack.Stack, the one compose helper the tests use
too) and the nginx static-308 baseline beside it."""

import subprocess
import time
from pathlib import Path

import httpx

from bench.wrk import BENCH_DIR, log
from tests.project import copy_project, free_port
from tests.stack import Stack

NGINX_IMAGE = "nginx:1.28-bookworm"
PROJECT_NAME = "shortener-bench"


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


class BenchStack:
    def __init__(self, workdir: Path, *, workers: int, fast_path: bool, extra_env: list[str]):
        self.stack = Stack(directory=copy_project(workdir / "project"), project=PROJECT_NAME)
        settings = dict(setting.split("=", 1) for setting in extra_env)
        self.stack.write_env(
            WEB_CONCURRENCY=str(workers), SHORTENER_REDIRECT_FAST_PATH=str(int(fast_path)), **settings
        )
        self.base_url = self.stack.base_url
        self.baseline_url = ""
        self.baseline_container = ""

    def compose(self, *args: str) -> str:
        return self.stack.compose(*args).stdout

    def up(self) -> None:
        log("building and starting the stack")
        self.stack.up()
        baseline_port = free_port()
        self.baseline_url = f"http://127.0.0.1:{baseline_port}/"
        self.baseline_container = subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--rm",
                "-p",
                f"127.0.0.1:{baseline_port}:80",
                "-v",
                f"{BENCH_DIR / 'nginx-static-308.conf'}:/etc/nginx/conf.d/default.conf:ro",
                NGINX_IMAGE,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        wait_for(self.baseline_url, status=308)

    def down(self) -> None:
        if self.baseline_container:
            subprocess.run(["docker", "rm", "-f", self.baseline_container], capture_output=True)
        self.stack.down(volumes=True)

    def containers(self) -> list[str]:
        return self.compose("ps", "-q").split()

    def manage(self, *args: str) -> str:
        return self.compose("exec", "-T", "app", "python", "manage.py", *args)

    def seed_through_api(self, count: int, api_key: str) -> list[str]:
        log(f"seeding {count} links through the API")
        slugs = []
        with httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {api_key}"}) as client:
            for i in range(count):
                response = client.post("/", json={"url": f"https://example.com/bench/seed/{i}"})
                response.raise_for_status()
                slugs.append(response.json()["short_slug"])
        return slugs

    def total_clicks(self) -> int:
        out = self.manage(
            "shell",
            "-c",
            "from django.db.models import Sum; from links.models import Link; "
            "print(Link.objects.aggregate(s=Sum('clicks'))['s'] or 0)",
        )
        return int(out.strip().splitlines()[-1])
