"""wrk runs, reported by the scripts' done() hook (report.lua) as JSON."""

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import median

from bench.machine import processes_paused

BENCH_DIR = Path(__file__).resolve().parent


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class WrkResult:
    name: str
    connections: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_3xx_or_2xx: int
    socket_errors: int
    # Measured in rounds: every round's requests/s (this result is the median
    # round), and the median of its shares of the baseline run in the same round.
    rounds_rps: list[float] = field(default_factory=list)
    share_of_baseline: float | None = None


def median_round(rounds: list[WrkResult], *, baselines: list[WrkResult]) -> WrkResult:
    """The round of median throughput, its figures kept together (requests/s,
    p50, p99 of one run), with every round's requests/s beside it and the
    median of its rounds' shares of `baselines` (the baseline of each round)."""
    middle = sorted(rounds, key=lambda result: result.rps)[len(rounds) // 2]
    rounds_rps = [result.rps for result in rounds]
    return replace(
        middle,
        rounds_rps=rounds_rps,
        share_of_baseline=median_ratio_by_round(rounds_rps, [baseline.rps for baseline in baselines]),
    )


def median_ratio_by_round(step_rps: list[float], other_rps: list[float]) -> float:
    """The median of one step's requests/s over another's, round by round: two
    steps measured in the same rounds (Runs.interleaved), each pair minutes
    apart at most, such as a step and that round's baseline."""
    return median(mine / theirs for mine, theirs in zip(step_rps, other_rps, strict=True))


def wrk(
    name: str,
    url: str,
    *,
    connections: int,
    seconds: float,
    script: str = "static.lua",
    env: dict | None = None,
    pause: Sequence[int] = (),
) -> WrkResult:
    """`script` is one of bench/'s Lua scripts; each loads report.lua's done().
    The processes `pause` names are stopped while wrk runs (bench/machine.py)."""
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        report = Path(tmp) / "report.json"
        command = [
            "wrk",
            "-t",
            str(min(2, connections)),
            "-c",
            str(connections),
            "-d",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            str(BENCH_DIR / script),
            url,
        ]
        with processes_paused(pause):
            completed = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env={**os.environ, **(env or {}), "WRK_REPORT": str(report)},
            )
        if completed.returncode != 0 or not report.exists():
            raise RuntimeError(
                f"wrk {name!r} failed ({completed.returncode}): {completed.stderr or completed.stdout}"
            )
        figures = json.loads(report.read_text())
    seconds_run = figures["duration_us"] / 1e6
    result = WrkResult(
        name=name,
        connections=connections,
        requests=figures["requests"],
        seconds=seconds_run,
        rps=figures["requests"] / seconds_run,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        non_3xx_or_2xx=figures["status_errors"],
        socket_errors=sum(
            figures[key] for key in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
    )
    log(
        f"{name:<28} c={connections:<4} {result.rps:>10.0f} req/s  p50 {result.p50_ms:.2f} ms  "
        f"p99 {result.p99_ms:.2f} ms  bad {result.non_3xx_or_2xx} errors {result.socket_errors}"
    )
    return result
