"""The large phase: a second stack of the same kind with 1,000,000 links (`seed_links`),
its redirect table built for every link, its uniform and Zipf steps measured in the
first stack's rounds (bench/runs.py: redirect_rounds), then its own creation,
memory and profile."""

import time
from dataclasses import asdict

from bench import memory
from bench.runs import Mixes, failed, sampled_run
from bench.stack import BenchStack
from bench.wrk import WrkResult, log, median_ratio_by_round
from links.redirect_table import BUILD_UNDER_WAY

# The large phase's stack: a second compose project, PROJECTS[kind] + this.
LARGE_PROJECT_SUFFIX = "-large"


def large_phase(
    mixes: Mixes, many: WrkResult, many_zipf: WrkResult, *, redirect: WrkResult, seconds: float, profile: bool
) -> tuple[dict, list[dict], list | None]:
    """The large stack's figures: its steps measured in the first stack's
    rounds (`many`, `many_zipf`) against the first stack's uniform step
    (`redirect`), then its creation, its memory under its own redirect load,
    and (with `profile`) where one app worker's time goes: the figures, its
    runs (as results["runs"] holds them) and the profile's summary (or None)."""
    bench = mixes.runs.bench
    links = mixes.links
    many_create = mixes.runs.create(bench.api_key, seconds=seconds, name=f"create, {links} links")
    under_load, summary = sampled_run(
        mixes.runs, mixes.uniform, seconds=seconds, profile=profile, tag="large"
    )
    runs = [asdict(many), asdict(many_zipf), asdict(many_create)]
    figures = {
        "links": links,
        "project": bench.stack.project,
        "services": bench.services(),
        "rps": many.rps,
        "p99_ms": many.p99_ms,
        # As issue 15 words its goals: requests/s against requests/s.
        "ratio_to_1k": many.rps / redirect.rps,
        "zipf_rps": many_zipf.rps,
        "zipf_ratio_to_1k": many_zipf.rps / redirect.rps,
        # The same, round by round: each pair minutes apart at most.
        "same_rounds": True,
        "round_ratio_to_1k": median_ratio_by_round(many.rounds_rps, redirect.rounds_rps),
        "zipf_round_ratio_to_1k": median_ratio_by_round(many_zipf.rounds_rps, redirect.rounds_rps),
        "create_rps": many_create.rps,
        "memory_mib_under_load": under_load,
        "memory_mib_after": memory.stats_mib(bench.containers()),
        "process_memory_mib_after": memory.process_mib(bench.containers()),
    }
    if failed(runs):
        figures["error_answers"] = bench.error_answers()
        log(f"failed requests (large stack): {figures['error_answers']}")
    return figures, runs, summary


def wait_for_redirect_table(bench: BenchStack, *, attempts: int = 180) -> str:
    """Measure a million links as a deployment serves them after a bulk import:
    with the redirect table (links/redirect_table.py) built for every link, as
    `build_redirect_table --every-link` does. (The workers' own builds during
    the seeding may leave up to an eighth of the links to be read from the
    database, depending on when they ran.) This asks for the build, waits while
    a worker's holds the lock, and gives the workers' keepers (a pass a second)
    time to map it. What the last build said."""
    for _ in range(attempts):
        build = bench.manage_command("build_redirect_table", "--every-link", check=False)
        said = build.stdout.strip()
        if build.returncode == 0:
            log(said)
            time.sleep(3)
            return said
        if build.returncode != BUILD_UNDER_WAY:
            raise AssertionError(
                f"build_redirect_table exited with {build.returncode}:\n{said}\n{build.stderr}"
            )
        time.sleep(1)
    raise AssertionError(f"no redirect table after {attempts} tries: {said}")
