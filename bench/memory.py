"""Memory of the stack's containers: `docker stats` (what an operator sees, the
page cache included) and the processes' own anonymous memory from the cgroup."""

import json
import re
import subprocess
import threading
import time
from collections.abc import Callable

UNITS = {
    "B": 1 / 2**20,
    "kB": 1 / 1024,
    "KiB": 1 / 1024,
    "KB": 1 / 1024,
    "MiB": 1,
    "MB": 1,
    "GiB": 1024,
    "GB": 1024,
}


def parse_mem_usage(mem_usage: str) -> float:
    """MiB used, from `docker stats`'s MemUsage ("12.5MiB / 1.9GiB")."""
    used = mem_usage.split("/")[0].strip()
    number, unit = re.fullmatch(r"([\d.]+)\s*([KMG]i?B|B|kB)", used).groups()
    return float(number) * UNITS[unit]


def stats_mib(containers: list[str]) -> float:
    """Memory used by these containers by `docker stats`, summed."""
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{json .}}", *containers],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(parse_mem_usage(json.loads(line)["MemUsage"]) for line in out.splitlines())


def process_mib(containers: list[str]) -> float:
    """Anonymous memory (the processes' own, without the page cache) of these
    containers, from their cgroup's memory.stat (v2 or v1)."""
    total = 0
    for container in containers:
        stat = subprocess.run(
            [
                "docker",
                "exec",
                container,
                "sh",
                "-c",
                "cat /sys/fs/cgroup/memory.stat 2>/dev/null || cat /sys/fs/cgroup/memory/memory.stat",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        values = dict(line.split() for line in stat.splitlines() if len(line.split()) == 2)
        total += int(values.get("anon", values.get("total_rss", 0)))
    return total / 2**20


def sample_during(measure: Callable[[], float], seconds: float) -> tuple[threading.Thread, list[float]]:
    """A thread taking `measure()` every half second for `seconds` (past the ramp-up)."""
    samples: list[float] = []

    def sample():
        deadline = time.monotonic() + seconds
        time.sleep(min(1.0, seconds / 3))
        while time.monotonic() < deadline - 0.5:
            try:
                samples.append(measure())
            except (subprocess.CalledProcessError, ValueError, AttributeError):
                pass  # a container between states: the next sample will do
            time.sleep(0.5)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread, samples
