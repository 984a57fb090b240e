"""The machine the benchmark shares: how busy it is with the stack idle, and
processes of its own (not the stack's) stopped while wrk measures.

Every step runs wrk, nginx and the app on the same cores, so anything else
the machine runs comes out of the figures, and its bursts show in the p99. On
this project's sandbox the container engine's health-check loop (it starts
Podman processes twice a second) kept the machine 11-12 % busy with the stack
idle, and stopping it while wrk measured cut every p99 (docs/performance.md,
2026-11-30, sixth session); a Docker host runs the checks inside its daemon.
`--pause PID` names such a process.
"""

import os
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

# /proc/stat's first eight columns: user nice system idle iowait irq softirq
# steal. The two after them (guest, guest_nice) are counted in user already.
CPU_COLUMNS = 8
IDLE_COLUMNS = (3, 4)  # idle, iowait


def cpu_times(stat: str) -> list[int]:
    """The machine's CPU times (all CPUs) from /proc/stat's text."""
    return [int(value) for value in stat.split("\n", 1)[0].split()[1 : 1 + CPU_COLUMNS]]


def busy_between(before: list[int], after: list[int]) -> float:
    """The share of the CPUs' time between two cpu_times() spent on anything
    but idling and waiting for I/O (0 when no time passed)."""
    spent = [later - earlier for earlier, later in zip(before, after, strict=True)]
    total = sum(spent)
    return (total - sum(spent[column] for column in IDLE_COLUMNS)) / total if total else 0.0


def busy_share(seconds: float) -> float:
    """How busy the machine is over the next `seconds`."""
    before = cpu_times(Path("/proc/stat").read_text())
    time.sleep(seconds)
    return busy_between(before, cpu_times(Path("/proc/stat").read_text()))


def command_line(pid: int) -> str:
    """The process's command line as a shell would show it, for the report."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()


def check_signalable(pid: int) -> None:
    """Raises OSError unless `pid` is a process this one may stop (before a
    run brings a stack up, not at its first measured step)."""
    if pid <= 0:
        raise ProcessLookupError(f"not a process: {pid}")
    os.kill(pid, 0)


@contextmanager
def processes_paused(pids: Iterable[int]) -> Iterator[None]:
    """The processes stopped (SIGSTOP) for the block, and continued after,
    whatever the block does; one that has exited meanwhile is let be. (A run
    killed outright cannot continue them: bench/run.py turns SIGTERM and
    SIGHUP into an exit that does.)"""
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
