#!/usr/bin/env python3
"""Benchmark a stack against nginx's static redirect, in one run.

    python bench/run.py                 # full run; writes docs/benchmarks.md and its chart
    python bench/run.py --stack scale   # the scale stack; writes docs/benchmarks-scale.md
    python bench/run.py --smoke         # a few seconds per step, writes to bench/results/
                                        # (CI: each stack, the single box with --million 300)

Brings up docker-compose.prod.yml (--stack prod, the default: nginx, one app
container, SQLite) or docker-compose.scale.yml (--stack scale: nginx over
--replicas app replicas on PostgreSQL and Redis) from a copy of the project (any
Docker engine), seeds links through the API with an API key, and beside it a
second stack of the same kind with 1,000,000 links made by `seed_links` (the
large phase, --million), then measures with wrk from the same machine:

- baseline: nginx (same image) answering a static `return 308`;
- redirect: GET /<random slug> through nginx -> app -> the database, clicks counted;
- Zipf:     the same with a skewed mix (s = 1.1: a few links get most requests);
- create:   POST / with a new URL each time, with an API key;
- memory:   `docker stats` of the whole stack (every container) under the redirect load;
- clicks:   the clicks stored afterwards against the requests wrk completed;
- a sweep of concurrency (1-256) for the chart;
- the large stack's uniform and Zipf steps in the same rounds as the first's,
  then its creation, memory (and profile).

Figures are reported as ratios to the baseline measured in the same run:
absolute numbers on a shared machine mean little. Each --stack's results go to
benchmarks[-scale].json/.md/.png; benchmarks.md also sets the two stacks side by
side when both JSON files are in the output folder. The parts: bench/stack.py
(the stack, through tests/stack's Stack and ScaleStack), bench/runs.py (the
measured steps, in rounds), bench/large.py (the large phase), bench/wrk.py (wrk,
reporting through report.lua's done() hook), bench/mixes.py, bench/memory.py,
bench/profile.py, bench/chart.py, bench/report.py.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
# The project folder is on the path only now.
from bench import memory  # noqa: E402
from bench.chart import chart  # noqa: E402
from bench.large import LARGE_PROJECT_SUFFIX, large_phase, wait_for_redirect_table  # noqa: E402
from bench.machine import busy_share, check_signalable, command_line, processes_paused  # noqa: E402
from bench.report import REPORT_NAMES, table, write_reports  # noqa: E402
from bench.runs import ZIPF_S, Mixes, Runs, failed, redirect_rounds, sampled_run  # noqa: E402
from bench.stack import STACKS, BenchStack  # noqa: E402
from bench.wrk import log  # noqa: E402
from tests.project import PROJECT_DIR  # noqa: E402


def run(args) -> dict:
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    seconds = 3 if args.smoke else args.seconds
    rounds = 1 if args.smoke else args.rounds
    links = 50 if args.smoke else args.links
    million = args.million if args.million is not None else 0 if args.smoke else 1_000_000
    sweep = [1, 16] if args.smoke else [1, 4, 16, 64, 128, 256]
    replicas = args.replicas if args.stack == "scale" else 1
    results: dict = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "stack": args.stack,
        "replicas": replicas,
        "workers": args.workers,
        "fast_path": not args.no_fast_path,
        "links": links,
        "rounds": rounds,
        "zipf_s": ZIPF_S,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "runs": [],
        "sweep": [],
        "paused_while_measuring": [command_line(pid) for pid in args.pause],
    }
    with tempfile.TemporaryDirectory(prefix="shortener-bench-") as tmp, ExitStack() as stacks:
        tmp = Path(tmp)

        def bench_stack(workdir: Path, project_suffix: str = "") -> BenchStack:
            bench = BenchStack(
                workdir,
                kind=args.stack,
                replicas=replicas,
                workers=args.workers,
                fast_path=not args.no_fast_path,
                extra_env=args.env,
                project_suffix=project_suffix,
            )
            stacks.callback(bench.down)
            return bench

        bench = bench_stack(tmp)
        if args.settle is not None:
            settle = args.settle
        elif args.smoke:
            settle = 1
        else:
            # On PostgreSQL (the scale stack) each flush adds to the counters: no roll-up to wait for.
            settle = bench.click_delay_seconds if args.stack == "prod" else 0
        results["settle_seconds"] = settle
        results["compose_files"] = bench.compose_files

        def runs_on(stack: BenchStack) -> Runs:
            return Runs(stack, rounds=rounds, pause=args.pause, settle_seconds=settle)

        bench.up()
        api_key = bench.issue_api_key()
        runs = runs_on(bench)
        mixes = [
            Mixes.over(
                runs,
                bench.seed_through_api(links),
                folder=tmp,
                names=("stack redirect", "stack redirect, Zipf"),
            )
        ]
        # The large phase: a second stack of the same kind beside the first,
        # with `million` links, its steps in the first stack's rounds.
        large_bench = bench_stack(tmp / "large", LARGE_PROJECT_SUFFIX) if million else None
        if large_bench is not None:
            large_bench.up(baseline=False)
            large_bench.issue_api_key()
            log(f"seeding {million} links with seed_links")
            started = time.monotonic()
            big = large_bench.manage("seed_links", "--count", str(million)).split()
            results["million_seed_seconds"] = round(time.monotonic() - started, 1)
            if args.stack == "prod":
                results["million_table"] = wait_for_redirect_table(large_bench)
            names = (f"redirect, {len(big)} links", f"redirect, Zipf, {len(big)} links")
            mixes.append(Mixes.over(runs_on(large_bench), big, folder=tmp, names=names))
        # Warm up: both nginx and the app's caches, as in steady production.
        for mix in mixes:
            mix.runs.redirects(mix.uniform, connections=16, seconds=min(2, seconds), name="warm-up")
        clicks_before = bench.settled_clicks()  # the warm-up's clicks in the database first
        runs.counted.clear()
        # The load the measured runs share the cores with: the stacks idle,
        # and the --pause processes stopped as they are while wrk runs.
        with processes_paused(args.pause):
            results["busy_share_stack_idle"] = busy_share(3)
        log(f"machine busy with the stack(s) idle: {results['busy_share_stack_idle']:.1%}")

        baseline, redirect, zipf, *large_steps = redirect_rounds(mixes, seconds=seconds)
        results["runs"] += [asdict(baseline), asdict(redirect), asdict(zipf)]
        # Memory and the profile under the same load, in a run of their own:
        # docker stats and py-spy would take CPU from the measured run.
        under_load, profile = sampled_run(
            runs, mixes[0].uniform, seconds=seconds, profile=args.profile, tag="small"
        )
        if profile:
            results["profile_1k"] = profile
        results["memory_mib_under_load"] = under_load
        results["memory_services"] = bench.services()
        results["memory_mib_idle"] = memory.stats_mib(bench.containers())
        results["process_memory_mib"] = memory.process_mib(bench.containers())

        for connections in sweep:
            step = max(2, seconds / 2)
            base = runs.baseline(connections=connections, seconds=step)
            stack = runs.redirects(
                mixes[0].uniform, connections=connections, seconds=step, name="stack redirect"
            )
            results["sweep"].append({"baseline": asdict(base), "stack": asdict(stack)})

        stored = bench.settled_clicks() - clicks_before
        redirect_requests = sum(result.requests for result in runs.counted)
        # wrk stops counting with requests in flight: the server may have
        # answered (and counted) up to one more per connection per run.
        in_flight = sum(result.connections for result in runs.counted)
        results["clicks"] = {
            "requests_completed": redirect_requests,
            "clicks_stored": stored,
            "difference": stored - redirect_requests,
            "in_flight_bound": in_flight,
            "exact": 0 <= stored - redirect_requests <= in_flight,
        }
        log(f"clicks stored {stored}, requests completed {redirect_requests}")

        create = runs.create(api_key, seconds=seconds)
        results["runs"].append(asdict(create))
        if failed(results["runs"] + [step for point in results["sweep"] for step in point.values()]):
            results["error_answers"] = bench.error_answers()
            log(f"failed requests: {results['error_answers']}")

        if large_bench is not None:
            results["million"], large_runs, profile = large_phase(
                mixes[1], *large_steps, redirect=redirect, seconds=seconds, profile=args.profile
            )
            results["runs"] += large_runs
            if profile:
                results["profile_1m"] = profile
    results["baseline_rps"] = baseline.rps
    results["redirect_rps"] = redirect.rps
    results["redirect_ratio"] = redirect.share_of_baseline
    results["zipf_ratio"] = zipf.share_of_baseline
    results["create_rps"] = create.rps
    return results


def odd_count(text: str) -> int:
    """An odd number of rounds, so that one round is the median."""
    count = int(text)
    if count < 1 or count % 2 == 0:
        raise argparse.ArgumentTypeError(f"an odd number of rounds, 1 or more (not {count})")
    return count


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds per step; no large phase unless --million is given",
    )
    parser.add_argument(
        "--stack",
        choices=STACKS,
        default="prod",
        help="prod (default): docker-compose.prod.yml, SQLite; "
        "scale: docker-compose.scale.yml, app replicas on PostgreSQL and Redis",
    )
    parser.add_argument("--replicas", type=int, default=3, help="app replicas of the scale stack")
    parser.add_argument("--seconds", type=float, default=10, help="duration of each main step")
    parser.add_argument("--links", type=int, default=1000)
    parser.add_argument(
        "--settle",
        type=float,
        help="seconds each redirect mix runs unmeasured before it is measured, and at least the rest "
        "before each nginx run (default: as long as a click can wait for its roll-up on SQLite, 0 on "
        "PostgreSQL, 1 with --smoke)",
    )
    parser.add_argument(
        "--rounds",
        type=odd_count,
        default=3,
        help="rounds of the baseline and redirect steps, in turn (an odd number); each figure is its "
        "median round (1 with --smoke)",
    )
    parser.add_argument(
        "--million",
        type=int,
        help="links of the large phase's stack, measured in the same rounds as the first (default "
        "1,000,000; 0 skips it, as --smoke does unless it is given)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="uvicorn workers per app container (WEB_CONCURRENCY; default 2 for prod, 1 for scale)",
    )
    parser.add_argument("--no-fast-path", action="store_true", help="send redirects through Django")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample an app worker with py-spy during the redirect runs; report where its time goes",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra setting for the stack's .env (repeatable)",
    )
    parser.add_argument(
        "--pause",
        type=int,
        action="append",
        default=[],
        metavar="PID",
        help="a process of the machine's own (not the stack's) to stop while wrk measures and continue "
        "after, such as the container sandbox's health-check loop (repeatable; bench/machine.py)",
    )
    parser.add_argument(
        "--output", type=Path, help="folder for results (default docs/, or bench/results/ with --smoke)"
    )
    args = parser.parse_args()
    for pid in args.pause:
        try:
            check_signalable(pid)
        except OSError as error:
            parser.error(f"--pause {pid}: {error}")
    if args.pause:
        # A run stopped by SIGTERM or SIGHUP exits through its finally blocks,
        # which continue the paused processes (SIGKILL cannot: kill -CONT them).
        for stop in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop, lambda number, frame: sys.exit(128 + number))
        log(f"stopping while wrk measures: {', '.join(map(str, args.pause))}")
    if args.workers is None:
        # Two cores: the single box's two workers, or one per replica beside PostgreSQL and Redis.
        args.workers = 2 if args.stack == "prod" else 1
    output = args.output or (BENCH_DIR / "results" if args.smoke else PROJECT_DIR / "docs")
    output.mkdir(parents=True, exist_ok=True)
    results = run(args)
    results["command"] = ("python bench/run.py " + " ".join(sys.argv[1:])).strip()
    name = REPORT_NAMES[args.stack]
    (output / f"{name}.json").write_text(json.dumps(results, indent=2))
    chart(results, output / f"{name}.png")
    write_reports(output)
    print(table(results))
    print(
        f"redirect: {results['redirect_ratio']:.1%} of nginx static 308 (Zipf {results['zipf_ratio']:.1%}); "
        f"create {results['create_rps']:,.0f}/s; clicks {results['clicks']}; "
        f"memory {results.get('memory_mib_under_load')} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
