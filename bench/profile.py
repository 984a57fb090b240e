"""py-spy samples of one app worker under load, summed by function (self time)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

from bench.machine import command_line
from bench.wrk import log

# Leaves where a thread waits rather than works. `_worker` of concurrent.futures is an
# idle pool thread blocked in its queue's get() (C code: no deeper Python frame);
# psycopg's `Connection.wait` is a thread blocked on PostgreSQL: on the scale stack
# mostly the fast path's LISTEN thread (links/fastpath.py), half of all samples.
IDLE_LEAF = re.compile(
    r"^(Condition\.wait|Event\.wait|Connection\._recv|_recv_bytes|select|poll)\b"
    r"|^_worker \(.*concurrent/futures/thread\.py"
    r"|^Connection\.wait \(.*psycopg/connection\.py"
)


def profile_app_worker(app_container: str, seconds: float, output: Path) -> subprocess.Popen | None:
    """py-spy samples one uvicorn worker of the app for `seconds` (raw, collapsed stacks)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        log("py-spy is not installed: no profile")
        return None
    parent = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", app_container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    # Worker processes, not multiprocessing's resource tracker.
    workers = [
        pid
        for pid in children
        if "spawn_main" in (line := command_line(int(pid))) and "resource_tracker" not in line
    ]
    worker = workers[0] if workers else parent
    command = [py_spy, "record", "--nonblocking", "-r", "250", "-d", str(round(seconds)), "-p", worker]
    return subprocess.Popen(
        [*command, "-f", "raw", "-o", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def summarize_profile(path: Path, *, top: int = 12) -> list[tuple[str, float]]:
    """The functions where one worker spent its samples (self time, share of all samples)."""
    self_samples: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        leaf = stack.split(";")[-1]
        if IDLE_LEAF.search(leaf):
            continue  # a thread waiting (the flusher's timer, the supervisor pipe), not working
        # "function (file:line)" -> "function (file)": lines of one function add up.
        leaf = re.sub(r":\d+\)$", ")", leaf)
        leaf = re.sub(r"\(/.*/(site-packages|lib/python3[.\d]*|app)/", "(", leaf)
        self_samples[leaf] = self_samples.get(leaf, 0) + int(count)
        total += int(count)
    ranked = sorted(self_samples.items(), key=lambda item: -item[1])[:top]
    return [(name, samples / total) for name, samples in ranked] if total else []
