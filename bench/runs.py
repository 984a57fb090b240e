"""The measured steps against a stack: wrk's runs of nginx's static 308, of the
redirect mixes and of creation, in interleaved rounds (Runs), the two mixes over a
stack's links (Mixes), and a run with memory and a profile sampled (sampled_run)."""

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench import memory
from bench.mixes import write_slugs, write_zipf_slugs
from bench.profile import profile_app_worker, summarize_profile
from bench.stack import BenchStack
from bench.wrk import WrkResult, median_round, wrk

ZIPF_S = 1.1
ZIPF_DRAWS = 2_000_000  # the sequence redirect.lua walks: longer than any run's requests
# A rest before each run of nginx's static 308: the app's click flush (every
# second, up to a fifth of a second at 1,000,000 links) ends first, since it
# runs on the same cores as the baseline.
REST_SECONDS = 3


class Runs:
    """The measured steps against one stack."""

    def __init__(
        self, bench: BenchStack, *, rounds: int, pause: Sequence[int] = (), settle_seconds: float = 0
    ):
        self.bench = bench
        self.rounds = rounds
        # How long a mix runs unmeasured before a measured run of it
        # (steady_redirects): as long as a click waits for its roll-up.
        self.settle_seconds = settle_seconds
        # Processes of the machine's own, stopped while wrk measures (bench/machine.py).
        self.pause = tuple(pause)
        # Every redirect run since the clicks were last settled: what they
        # completed is checked against the clicks stored.
        self.counted: list[WrkResult] = []

    def interleaved(self, baseline, *steps) -> list[WrkResult]:
        """The baseline and each step (functions that make one run) once a
        round, in turn, so that a slow spell of the shared machine falls on
        every step alike: the baseline's and each step's median round, with the
        median of the step's shares of the baseline in the same round. One
        run's figure moved by a third from one full run to the next
        (docs/performance.md); a ratio between two such figures, more."""
        rounds = [[make() for make in (baseline, *steps)] for _ in range(self.rounds)]
        by_step = [list(of_step) for of_step in zip(*rounds, strict=True)]
        return [median_round(of_step, baselines=by_step[0]) for of_step in by_step]

    def steady_redirects(self, slugs_file: Path, *, seconds: float, name: str, sequence=False):
        """A measured run (64 connections) after the same mix has run, unmeasured,
        for settle_seconds: the clicks of the step before are then rolled up
        before this one is measured, and this one's own roll-ups come at their
        steady pace. Without it, the journal's roll-up of a uniform step's clicks
        (about a second of a CPU over 1,000,000 links) landed at the start of
        the Zipf step after it (docs/performance.md, 2026-12-01)."""
        if self.settle_seconds:
            self.redirects(
                slugs_file, connections=64, seconds=self.settle_seconds, name="settle", sequence=sequence
            )
        return self.redirects(slugs_file, connections=64, seconds=seconds, name=name, sequence=sequence)

    def _wrk(self, name: str, url: str, **options) -> WrkResult:
        return wrk(name, url, pause=self.pause, **options)

    def redirects(self, slugs_file: Path, *, connections: int, seconds: float, name: str, sequence=False):
        result = self._wrk(
            name,
            self.bench.base_url,
            connections=connections,
            seconds=seconds,
            script="redirect.lua",
            env={"SLUGS_FILE": str(slugs_file), "SLUGS_ORDER": "sequence" if sequence else "random"},
        )
        self.counted.append(result)
        return result

    def baseline(self, *, connections: int, seconds: float) -> WrkResult:
        # After a settled step, its last clicks' roll-up comes up to a settle's
        # length later: over first, so that it does not slow nginx's run.
        time.sleep(max(REST_SECONDS, self.settle_seconds))
        url = self.bench.baseline_url
        return self._wrk("nginx static 308", url, connections=connections, seconds=seconds)

    def create(self, api_key: str, *, seconds: float, name: str = "stack create (POST /)") -> WrkResult:
        return self._wrk(
            name,
            self.bench.base_url,
            connections=16,
            seconds=seconds,
            script="create.lua",
            env={"API_KEY": api_key},
        )

    def start_profile(self, seconds: float, output: Path):
        """py-spy on one app worker for the next `seconds` (None without py-spy)."""
        return profile_app_worker(self.bench.app_containers()[0], seconds - 1, output)


@dataclass
class Mixes:
    """A stack's Runs and the two mixes over its links: uniform and Zipf, and their steps' names."""

    runs: Runs
    links: int
    uniform: Path
    zipf: Path
    names: tuple[str, str]

    @classmethod
    def over(cls, runs: Runs, slugs: list[str], *, folder: Path, names: tuple[str, str]) -> "Mixes":
        """The mixes over `slugs`, written into `folder` under the stack's compose project's name."""
        project = runs.bench.stack.project
        return cls(
            runs,
            len(slugs),
            write_slugs(folder / f"{project}.uniform", slugs),
            write_zipf_slugs(folder / f"{project}.zipf", slugs, draws=ZIPF_DRAWS, s=ZIPF_S),
            names,
        )


def redirect_rounds(mixes: list[Mixes], *, seconds: float) -> list[WrkResult]:
    """nginx's static 308 (beside the first mixes' stack), then each of
    `mixes`' uniform and Zipf steps on its own stack (64 connections), in
    rounds: the baseline's result, then each step's. The large phase's steps run
    in the first stack's rounds, so that the two stacks' requests/s are
    measured minutes apart at most, not a phase apart (docs/performance.md,
    2026-12-02, fourth)."""
    first = mixes[0].runs
    steps = [
        partial(mix.runs.steady_redirects, slugs, seconds=seconds, name=name, sequence=sequence)
        for mix in mixes
        for slugs, name, sequence in ((mix.uniform, mix.names[0], False), (mix.zipf, mix.names[1], True))
    ]
    return first.interleaved(partial(first.baseline, connections=64, seconds=seconds), *steps)


def failed(runs: list[dict]) -> bool:
    """Whether any of these runs (as in results["runs"]) counted a failed request."""
    return any(run["non_3xx_or_2xx"] or run["socket_errors"] for run in runs)


def sampled_run(runs: Runs, slugs_file: Path, *, seconds: float, profile: bool, tag: str):
    """A redirect run (64 connections) with the stack's memory sampled by
    `docker stats`, and one app worker profiled by py-spy if `profile`: the
    most memory under load (None without a sample), and the profile's summary
    (None without one)."""
    bench = runs.bench
    sampler, under_load = memory.sample_during(lambda: memory.stats_mib(bench.containers()), seconds)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        output = Path(tmp) / f"{tag}.txt"
        profiler = runs.start_profile(seconds, output) if profile else None
        runs.redirects(slugs_file, connections=64, seconds=seconds, name=f"redirect, sampled ({tag})")
        sampler.join()
        summary = None
        if profiler:
            profiler.wait()
            summary = summarize_profile(output)
    return (max(under_load) if under_load else None), summary
