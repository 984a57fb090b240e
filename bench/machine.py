"""The machine the benchmark shares: how busy it is with the stack idle, and
processes of its own (not the stack's) stopped while wrk measures.

Every step runs wrk, nginx and the app on the same cores, so anything else
the machine runs comes out of the figures, and its bursts show in the p99. On
this project's sandbox the container engine's health-check loop (Podman behind
the Docker API, polled twice a second) kept a tenth of two cores busy with the
stack idle (docs/performance.md, 2026-11-30, sixth session); a Docker host runs
the checks inside its daemon. `--pause PID` names such a process.
"""

import os
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def busy_share(seconds: float) -> float:
    """The share of all CPUs' time spent on anything but idling (and waiting
    for I/O) over the next `seconds`, from /proc/stat."""

    def times() -> list[int]:
        # cpu user nice system idle iowait irq softirq steal …
        return [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]

    before = times()
    time.sleep(seconds)
    spent = [after - earlier for earlier, after in zip(before, times(), strict=True)]
    idle = spent[3] + spent[4]
    return (sum(spent) - idle) / sum(spent)


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()


@contextmanager
def processes_paused(pids: Iterable[int]) -> Iterator[None]:
    """The processes stopped (SIGSTOP) for the block, and continued after,
    whatever the block does; one that has exited meanwhile is let be."""
    stopped: list[int] = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
