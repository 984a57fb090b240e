"""The benchmark harness: its short smoke mode runs end to end against each stack
(the single box and the scale stack) and its correctness figures hold; both
stacks' figures side by side in benchmarks.md; its mixes and parsers in-process.
Timings are reported, never asserted."""

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest

from bench.large import LARGE_PROJECT_SUFFIX
from bench.machine import busy_between, busy_share, cpu_times, processes_paused
from bench.memory import parse_mem_usage
from bench.mixes import zipf_indices
from bench.profile import summarize_profile
from bench.report import REPORT_NAMES, large_stack, machine_note, round_ratios, rounds_note, table
from bench.run import odd_count
from bench.runs import Mixes, Runs, redirect_rounds
from bench.stack import BASELINE_LABEL, NGINX_IMAGE, PROJECTS, BenchStack
from bench.wrk import WrkResult, median_ratio_by_round, median_round
from tests.conftest import PROJECT_DIR
from tests.stack import require_engine

STEPS = ["nginx static 308", "stack redirect", "stack redirect, Zipf", "stack create (POST /)"]
# Each stack's running containers, by compose service: what its memory figures add up.
SERVICES = {"prod": ["app", "backup", "nginx"], "scale": ["app", "app", "app", "nginx", "postgres", "redis"]}
MEMORY_OF = {"prod": "app, backup, nginx", "scale": "3 app, nginx, postgres, redis"}
COMPOSE_FILES = {"prod": ["docker-compose.prod.yml"], "scale": ["docker-compose.scale.yml"]}
WORKERS = {"prod": 2, "scale": 1}  # uvicorn workers per app container by default
IDLE = {"prod": "both stacks", "scale": "the stack"}  # what was idle while the machine's load was read
# The single box's smoke run has a small large phase (--million): a second stack
# of this many links, measured in the same rounds as the first.
LARGE = {"prod": 300, "scale": 0}


def large_steps(stack: str) -> list[str]:
    """The large phase's steps measured in the first stack's rounds (none without one)."""
    links = LARGE[stack]
    return [f"redirect, {links} links", f"redirect, Zipf, {links} links"] if links else []


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """`bench/run.py --smoke --stack <stack>`, once per stack, every stack into one folder
    (as the full runs write into docs/): the folder and that run's results."""
    require_engine()
    if not shutil.which("wrk"):
        pytest.skip("wrk is not installed (apt-get install wrk)")
    output = tmp_path_factory.mktemp("bench")
    runs = {}
    # A process of the machine's own for the run to stop while wrk measures (--pause).
    bystander = subprocess.Popen(["sleep", "3600"])

    def run(stack: str):
        if stack not in runs:
            command = [sys.executable, "bench/run.py", "--smoke", "--stack", stack, "--output", str(output)]
            command += ["--million", str(LARGE[stack])]
            with StateWatch(bystander.pid) as watch:
                result = subprocess.run(
                    [*command, "--pause", str(bystander.pid)],
                    cwd=PROJECT_DIR,
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
            runs[stack] = json.loads((output / f"{REPORT_NAMES[stack]}.json").read_text())
            # The wrk runs in the order made, by name, from the harness's log.
            runs[stack]["wrk_runs_logged"] = re.findall(r"^\[bench\] (\S.*?) +c=\d+ ", result.stderr, re.M)
            # Stopped while wrk measured, and continued after: running or sleeping.
            assert "T" in watch.seen
            assert process_state(bystander.pid) in "RS"
        return output, runs[stack]

    yield run
    bystander.kill()
    bystander.wait()


def process_state(pid: int) -> str:
    """R, S, T (stopped)…: /proc/PID/stat's third field."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def state_within(pid: int, states: str, *, seconds: float = 5) -> str:
    """The process's state once it is one of `states` (a signal is delivered
    asynchronously), or its last state after `seconds`."""
    deadline = time.monotonic() + seconds
    while (state := process_state(pid)) not in states and time.monotonic() < deadline:
        time.sleep(0.01)
    return state


class StateWatch:
    """Every state a process is seen in, polled every 20 ms for the block."""

    def __init__(self, pid: int):
        self.pid = pid
        self.seen: set[str] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._done.wait(0.02):
            self.seen.add(process_state(self.pid))

    def __enter__(self) -> "StateWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


@pytest.mark.stack
@pytest.mark.parametrize("stack", ["prod", "scale"])
def test_benchmark_harness_smoke_run(smoke, stack):
    output, results = smoke(stack)
    assert results["stack"] == stack
    assert results["compose_files"] == COMPOSE_FILES[stack]
    assert (results["replicas"], results["workers"]) == ({"prod": 1, "scale": 3}[stack], WORKERS[stack])
    names = [run["name"] for run in results["runs"]]
    large_creation = [f"create, {LARGE[stack]} links"] if LARGE[stack] else []
    assert names == STEPS + large_steps(stack) + large_creation
    answers = (results.get("error_answers"), (results.get("million") or {}).get("error_answers"))
    for run in results["runs"] + [step for point in results["sweep"] for step in point.values()]:
        # Figures from wrk's done() hook: requests over the measured duration.
        assert run["requests"] > 0 and run["seconds"] > 0, run
        assert run["rps"] == pytest.approx(run["requests"] / run["seconds"]), run
        assert 0 < run["p50_ms"] <= run["p99_ms"], run
        assert run["non_3xx_or_2xx"] == 0 and run["socket_errors"] == 0, (run, answers)
    assert [point["stack"]["connections"] for point in results["sweep"]] == [1, 16]
    assert results["redirect_ratio"] == pytest.approx(results["runs"][1]["rps"] / results["runs"][0]["rps"])
    assert results["zipf_ratio"] == pytest.approx(results["runs"][2]["rps"] / results["runs"][0]["rps"])
    assert results["clicks"]["exact"], results["clicks"]
    assert results["clicks"]["requests_completed"] > 0
    # Memory of the whole stack: every running container, PostgreSQL and Redis included.
    assert results["memory_services"] == SERVICES[stack]
    assert results["memory_mib_under_load"] > 0
    assert results["process_memory_mib"] > 0
    creation = next(run for run in results["runs"] if run["name"] == "stack create (POST /)")
    assert results["create_rps"] == creation["rps"] > 0
    # Each redirect step measured after its mix ran a while unmeasured.
    assert results["settle_seconds"] == 1
    logged = results["wrk_runs_logged"]
    # The large stack's steps (if any) in the first stack's round, each settled as well.
    in_round = ["stack redirect", "stack redirect, Zipf", *large_steps(stack)]
    after_nginx = logged[logged.index("nginx static 308") :]
    assert after_nginx[: 1 + 2 * len(in_round)] == [
        "nginx static 308",
        *(name for step in in_round for name in ("settle", step)),
    ], logged
    assert after_nginx[1 + 2 * len(in_round)] == "redirect, sampled (small)", logged
    name = REPORT_NAMES[stack]
    assert (output / f"{name}.png").stat().st_size > 10_000
    report = (output / f"{name}.md").read_text()
    assert f"**Redirect throughput: {results['redirect_ratio']:.1%} of nginx's static 308**" in report
    assert f"with the Zipf (s = 1.1) mix over the same links {results['zipf_ratio']:.1%}" in report
    assert (
        f"Creation (POST / with an API key, 16 connections): {results['create_rps']:,.0f} links/s" in report
    )
    assert f"Memory of the whole stack ({MEMORY_OF[stack]}) under the redirect load" in report
    assert "Each redirect step was measured after 1 s of the same mix, unmeasured" in report
    assert f"`{results['command']}`" in report and f"--stack {stack}" in results["command"]
    # The machine's own load, and the process stopped while wrk measured.
    assert 0 <= results["busy_share_stack_idle"] <= 1
    assert results["paused_while_measuring"] == ["sleep 3600"]
    assert (
        f"The machine was {results['busy_share_stack_idle']:.1%} busy with {IDLE[stack]} idle and these "
        "processes stopped, as they were while wrk measured: `sleep 3600`." in report
    )
    # Both stacks and the baseline container are gone.
    for label in (
        f"com.docker.compose.project={PROJECTS[stack]}",
        f"com.docker.compose.project={PROJECTS[stack]}{LARGE_PROJECT_SUFFIX}",
        f"{BASELINE_LABEL}={PROJECTS[stack]}",
    ):
        left = subprocess.run(
            ["docker", "ps", "-a", "-q", "--filter", f"label={label}"], capture_output=True, text=True
        )
        assert left.returncode == 0 and left.stdout.strip() == "", label


@pytest.mark.stack
def test_the_large_phase_is_a_second_stack_measured_in_the_first_stacks_rounds(smoke):
    output, results = smoke("prod")
    runs = {run["name"]: run for run in results["runs"]}
    redirect, many, many_zipf = (runs[name] for name in ("stack redirect", *large_steps("prod")))
    million = results["million"]
    assert million["links"] == LARGE["prod"] and million["same_rounds"]
    # Its own compose project, with its own containers (no baseline nginx of its own).
    assert million["project"] == PROJECTS["prod"] + LARGE_PROJECT_SUFFIX
    assert million["services"] == SERVICES["prod"]
    # Requests/s against requests/s, as the goals are worded.
    assert million["ratio_to_1k"] == pytest.approx(many["rps"] / redirect["rps"])
    assert million["zipf_ratio_to_1k"] == pytest.approx(many_zipf["rps"] / redirect["rps"])
    # One round in a smoke run: its ratio is the median of the rounds' ratios.
    assert million["round_ratio_to_1k"] == pytest.approx(million["ratio_to_1k"])
    assert million["zipf_round_ratio_to_1k"] == pytest.approx(million["zipf_ratio_to_1k"])
    assert million["create_rps"] == runs[f"create, {LARGE['prod']} links"]["rps"] > 0
    # The large stack's memory under its own redirect load, and its processes' own after.
    assert million["memory_mib_under_load"] > 0 and million["process_memory_mib_after"] > 0
    assert "redirect, sampled (large)" in results["wrk_runs_logged"]
    # Measured with the redirect table holding every link, as after a bulk import.
    assert re.fullmatch(r"redirect table (built|up to date): \d+ links .*", results["million_table"])
    report = (output / "benchmarks.md").read_text()
    assert (
        f"- With {LARGE['prod']} links: uniform {million['rps']:,.0f} requests/s, "
        f"{million['ratio_to_1k']:.1%} of the 50-link figure (target ≥ 80 %)" in report
    )
    assert (
        "(the median of each round's requests/s against the first stack's in that round: uniform "
        f"{million['round_ratio_to_1k']:.1%}, Zipf {million['zipf_round_ratio_to_1k']:.1%})" in report
    )
    assert (
        f"The large stack's memory under its redirect load {million['memory_mib_under_load']:.0f} MiB, "
        "afterwards" in report
    )
    assert "busy with both stacks idle and these processes stopped" in report


@pytest.mark.stack
def test_both_stacks_side_by_side_on_each_page(smoke):
    output, single = smoke("prod")
    _, scale = smoke("scale")
    rows = [
        f"| redirect, ratio to nginx static 308 | {single['redirect_ratio']:.1%} | "
        f"{scale['redirect_ratio']:.1%} |",
        f"| Zipf mix, ratio to nginx static 308 | {single['zipf_ratio']:.1%} | {scale['zipf_ratio']:.1%} |",
        f"| creation (POST /, 16 connections) | {single['create_rps']:,.0f} links/s | "
        f"{scale['create_rps']:,.0f} links/s |",
        f"| redirect p50 / p99 (64 connections) | {single['runs'][1]['p50_ms']:.2f} / "
        f"{single['runs'][1]['p99_ms']:.2f} ms | {scale['runs'][1]['p50_ms']:.2f} / "
        f"{scale['runs'][1]['p99_ms']:.2f} ms |",
        f"| memory under load, every container | {single['memory_mib_under_load']:.0f} MiB | "
        f"{scale['memory_mib_under_load']:.0f} MiB |",
        f"| clicks stored = redirects completed | yes ({single['clicks']['difference']:+d}, in flight ≤ "
        f"{single['clicks']['in_flight_bound']}) | yes ({scale['clicks']['difference']:+d}, in flight ≤ "
        f"{scale['clicks']['in_flight_bound']}) |",
        "| setup | one app container, 2 uvicorn worker(s), SQLite | "
        "3 app replicas, 1 uvicorn worker(s) each, PostgreSQL + Redis |",
        f"| the large phase (`--million`), uniform | {LARGE['prod']} links: "
        f"{single['million']['ratio_to_1k']:.1%} of 50 links' throughput, p99 "
        f"{single['million']['p99_ms']:.1f} ms | — |",  # none in the scale stack's smoke run
    ]
    for name in REPORT_NAMES.values():
        page = (output / f"{name}.md").read_text()
        assert "| | single box | scale stack |" in page, name
        for row in rows:
            assert row in page, (name, row)


@pytest.mark.stack
def test_a_bench_stack_removes_the_baseline_nginx_a_killed_run_left(tmp_path):
    # nginx's static 308 runs by `docker run` beside the compose project: a run killed
    # before its teardown leaves it, and the smoke run's check above would then fail.
    require_engine()
    project = PROJECTS["prod"] + "-leftover"
    label = f"label={BASELINE_LABEL}={project}"
    left = subprocess.run(
        ["docker", "run", "-d", "--label", f"{BASELINE_LABEL}={project}", NGINX_IMAGE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        listing = ["docker", "ps", "-aq", "--filter", label]
        assert subprocess.run(listing, capture_output=True, text=True, check=True).stdout.split()
        BenchStack(tmp_path, kind="prod", workers=1, fast_path=True, extra_env=[], project_suffix="-leftover")
        assert subprocess.run(listing, capture_output=True, text=True, check=True).stdout.split() == []
    finally:
        subprocess.run(["docker", "rm", "-f", left], capture_output=True)


def test_the_zipf_mix_sends_most_requests_to_a_few_links():
    draws = zipf_indices(10_000, 100_000, s=1.1, rng=random.Random(1))
    assert all(0 <= index < 10_000 for index in draws)
    ranked = Counter(draws).most_common()
    # P(the 100 likeliest of 10,000 links) = H(100, 1.1) / H(10,000, 1.1), about 0.65 (0.01 if uniform).
    assert 0.60 < sum(count for _, count in ranked[:100]) / len(draws) < 0.70
    # Which links are hot is shuffled: not the first (oldest) ones.
    assert len({index for index, _ in ranked[:100]} & set(range(100))) < 10


@pytest.mark.parametrize(
    "mem_usage, mib",
    [("12.5MiB / 1.9GiB", 12.5), ("1.5GiB / 4GiB", 1536), ("512KiB / 1GiB", 0.5), ("2048kB / 1GB", 2)],
)
def test_docker_stats_memory_is_read_in_mib(mem_usage, mib):
    assert parse_mem_usage(mem_usage) == pytest.approx(mib)


def test_the_profile_counts_work_and_leaves_waiting_threads_out(tmp_path):
    site = "/usr/local/lib/python3.11/site-packages"
    raw = tmp_path / "raw.txt"
    raw.write_text(
        # py-spy's raw (collapsed) stacks: frames from the root, then the sample count.
        f"<module> (/app/x.py:1);Runner.run ({site}/asyncio/runners.py:118) 60\n"
        f"<module> (/app/x.py:1);RedirectFastPath.handle (links/fastpath.py:40) 30\n"
        f"<module> (/app/x.py:1);RedirectFastPath.handle (links/fastpath.py:41) 10\n"
        # The LISTEN thread blocked on PostgreSQL, an idle pool thread, a timer: waits, not work.
        f"_listen (links/fastpath.py:230);Connection.wait ({site}/psycopg/connection.py:90) 100\n"
        f"run ({site}/threading.py:1);_worker (/usr/lib/python3.11/concurrent/futures/thread.py:81) 100\n"
        f"run ({site}/threading.py:1);Event.wait (/usr/lib/python3.11/threading.py:600) 100\n"
    )
    assert summarize_profile(raw) == [
        ("Runner.run (asyncio/runners.py)", 0.6),
        ("RedirectFastPath.handle (links/fastpath.py)", 0.4),
    ]


def wrk_result(name: str, rps: float, p99_ms: float = 10.0) -> WrkResult:
    return WrkResult(
        name=name,
        connections=64,
        requests=int(rps * 10),
        seconds=10.0,
        rps=rps,
        p50_ms=1.0,
        p99_ms=p99_ms,
        non_3xx_or_2xx=0,
        socket_errors=0,
    )


def test_a_step_in_rounds_is_its_median_round_with_every_rounds_figure():
    rounds = [wrk_result("redirect", rps, p99) for rps, p99 in ((900, 40.0), (1500, 20.0), (1200, 30.0))]
    baselines = [wrk_result("nginx static 308", rps) for rps in (3000, 5000, 10_000)]
    median = median_round(rounds, baselines=baselines)
    # One round's figures together (its p99 with its throughput), not a mix of rounds.
    assert (median.rps, median.p99_ms, median.requests) == (1200, 30.0, 12000)
    assert median.rounds_rps == [900, 1500, 1200]
    # Its share: the median of each round's share of that round's baseline
    # (30 %, 30 %, 12 %); neither the median round's rps over the median
    # baseline (24 %) nor the median round's own share (12 %).
    assert median.share_of_baseline == pytest.approx(0.30)


def test_interleaved_steps_run_in_turn_round_after_round():
    made = []
    figures = iter([100, 10, 40, 300, 60, 90, 200, 20, 40])

    def step(name):
        def make():
            made.append(name)
            return wrk_result(name, next(figures))

        return make

    runs = Runs(bench=None, rounds=3)
    baseline, redirect, zipf = runs.interleaved(step("baseline"), step("redirect"), step("zipf"))
    assert made == ["baseline", "redirect", "zipf"] * 3
    assert (baseline.rps, baseline.rounds_rps, baseline.share_of_baseline) == (200, [100, 300, 200], 1.0)
    # Shares by round: 10 %, 20 %, 10 % and 40 %, 30 %, 20 %.
    assert (redirect.rps, redirect.share_of_baseline) == (20, pytest.approx(0.10))
    assert (zipf.rps, zipf.share_of_baseline) == (40, pytest.approx(0.30))


def test_the_large_stacks_steps_run_in_the_first_stacks_rounds(tmp_path):
    made = []

    def recording(stack: str) -> Runs:
        """Runs whose wrk runs are recorded (stack, what, options) instead of made."""
        runs = Runs(bench=None, rounds=2)

        def baseline(**options):
            made.append((stack, "nginx static 308", options))
            return wrk_result("nginx static 308", 1000)

        def steady_redirects(slugs_file, **options):
            made.append((stack, slugs_file.name, options))
            return wrk_result(options["name"], 100)

        runs.baseline, runs.steady_redirects = baseline, steady_redirects
        return runs

    first = Mixes(recording("first"), 50, tmp_path / "a.uniform", tmp_path / "a.zipf", ("1k", "1k, Zipf"))
    large = Mixes(recording("large"), 300, tmp_path / "b.uniform", tmp_path / "b.zipf", ("1M", "1M, Zipf"))
    results = redirect_rounds([first, large], seconds=7)
    assert [result.name for result in results] == ["nginx static 308", "1k", "1k, Zipf", "1M", "1M, Zipf"]
    one_round = [
        ("first", "nginx static 308", {"connections": 64, "seconds": 7}),
        ("first", "a.uniform", {"seconds": 7, "name": "1k", "sequence": False}),
        ("first", "a.zipf", {"seconds": 7, "name": "1k, Zipf", "sequence": True}),
        ("large", "b.uniform", {"seconds": 7, "name": "1M", "sequence": False}),
        ("large", "b.zipf", {"seconds": 7, "name": "1M, Zipf", "sequence": True}),
    ]
    assert made == one_round * 2


NGINX_ROUNDS = (90_000, 80_000, 100_000)


def test_the_report_gives_each_rounds_figures_and_none_for_a_single_round():
    nginx = [wrk_result("nginx static 308", rps) for rps in NGINX_ROUNDS]
    redirect = [wrk_result("stack redirect", rps) for rps in (18_000, 24_000, 20_000)]
    results = {
        "rounds": 3,
        "baseline_rps": 90_000,
        "runs": [asdict(median_round(steps, baselines=nginx)) for steps in (nginx, redirect)],
    }
    [note] = rounds_note(results)
    assert "(requests/s by round: nginx static 308 90,000 · 80,000 · 100,000; " in note
    assert "stack redirect 18,000 · 24,000 · 20,000)" in note
    # The ratio column gives the median of the rounds' shares (20 %, 30 %, 20 %),
    # not 20,000 / 90,000.
    assert "| stack redirect | 64 | 20,000 | 1.00 | 10.00 | 20.0% | 0 |" in table(results)
    assert rounds_note({"rounds": 1, "runs": [asdict(wrk_result("nginx static 308", 90_000))]}) == []


def test_the_large_phase_is_reported_round_by_round_and_older_runs_as_shares_of_nginx():
    shares = {"share_ratio_to_1k": 0.625, "zipf_share_ratio_to_1k": 1.035}
    by_round = {"round_ratio_to_1k": 0.8, "zipf_round_ratio_to_1k": 0.95}
    round_wording = (
        " (the median of each round's requests/s against the first stack's in that round: uniform "
        "80.0%, Zipf 95.0%)"
    )
    # Steps in the first stack's rounds: the round-by-round ratios, shares recorded or not.
    assert round_ratios({**by_round, "same_rounds": True}) == round_wording
    assert round_ratios({**shares, **by_round, "same_rounds": True}) == round_wording
    # Shares only: of rounds shared with the first stack, or of a phase's own rounds (older runs).
    assert "in the same rounds: uniform 62.5%, Zipf 103.5%)" in round_ratios({**shares, "same_rounds": True})
    assert "in each phase's rounds, minutes apart: uniform 62.5%, Zipf 103.5%)" in round_ratios(shares)
    assert round_ratios({"ratio_to_1k": 0.5}) == ""  # a run made before rounds
    # Whose memory, and what was idle: the large stack's beside the first, or the one stack's (older runs).
    assert large_stack({"same_rounds": True}) == "The large stack's" and large_stack({}) == "Stack"
    note = {"busy_share_stack_idle": 0.02, "million": {"same_rounds": True}}
    assert "2.0% busy with both stacks idle" in machine_note(note)
    assert "2.0% busy with the stack idle" in machine_note({**note, "million": {"ratio_to_1k": 0.7}})
    assert machine_note({}) == "The machine's load with the stack idle was not measured in this run."


def test_the_mixes_of_two_stacks_are_written_to_files_of_their_own(tmp_path):
    class Stack:  # what Mixes.over reads of a BenchStack: its compose project's name
        def __init__(self, project):
            self.stack = type("Compose", (), {"project": project})()

    first, large = (
        Mixes.over(Runs(bench=Stack(project), rounds=1), slugs, folder=tmp_path, names=("u", "z"))
        for project, slugs in (("shortener-bench", ["a", "b"]), ("shortener-bench-large", ["c", "d", "e"]))
    )
    assert (first.links, large.links) == (2, 3)
    files = {first.uniform, first.zipf, large.uniform, large.zipf}
    assert len(files) == 4 and all(path.parent == tmp_path for path in files)
    assert set(first.uniform.read_text().split()) == {"a", "b"}
    assert set(large.zipf.read_text().split()) <= {"c", "d", "e"}


def test_two_steps_in_the_same_rounds_compare_round_by_round():
    one_k = WrkResult(**{**asdict(wrk_result("1k", 20_000)), "rounds_rps": [20_000, 10_000, 18_000]})
    many = WrkResult(**{**asdict(wrk_result("1M", 16_000)), "rounds_rps": [17_000, 9_000, 9_000]})
    # 85 %, 90 %, 50 %: the median 85 %, not 16,000 / 20,000 nor the medians' 9,000 / 18,000.
    assert median_ratio_by_round(many.rounds_rps, one_k.rounds_rps) == pytest.approx(0.85)


@pytest.mark.parametrize("rounds", ["0", "2", "-1"])
def test_rounds_are_an_odd_number(rounds):
    # One round is the median: an even count would have two.
    with pytest.raises(argparse.ArgumentTypeError):
        odd_count(rounds)
    assert odd_count("1") == 1 and odd_count("5") == 5


def test_paused_processes_are_stopped_in_the_block_and_continued_after_even_when_it_fails():
    sleeper = subprocess.Popen(["sleep", "60"])
    gone = subprocess.Popen(["sleep", "60"])
    try:
        with pytest.raises(RuntimeError), processes_paused([sleeper.pid, gone.pid]):
            assert state_within(sleeper.pid, "T") == "T"
            # One that exits while stopped is let be when the others continue.
            gone.kill()
            gone.wait()
            raise RuntimeError("the measured step failed")
        assert state_within(sleeper.pid, "RS") in "RS"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_run_refuses_a_process_it_cannot_pause_before_it_starts_a_stack():
    gone = subprocess.Popen(["sleep", "60"])
    gone.kill()
    gone.wait()
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--pause", str(gone.pid)],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"--pause {gone.pid}: " in result.stderr
    assert "[bench] building" not in result.stderr


# Two /proc/stat first lines 2 s apart on 2 CPUs (400 ticks): user nice system
# idle iowait irq softirq steal guest guest_nice.
STAT_BEFORE = "cpu  1000 0 500 8000 100 0 50 0 300 0\ncpu0 …"
STAT_AFTER = "cpu  1100 0 540 8230 120 0 60 0 330 0\ncpu0 …"


def test_the_busy_share_is_the_time_not_idle_nor_waiting_and_guests_are_not_counted_twice():
    before, after = cpu_times(STAT_BEFORE), cpu_times(STAT_AFTER)
    # 100 user + 40 system + 10 softirq busy, of 400 with 230 idle and 20 waiting for I/O
    # (the guest's 30 are in user already).
    assert busy_between(before, after) == pytest.approx(150 / 400)
    assert busy_between(before, before) == 0


def test_the_machines_busy_share_counts_a_process_spinning_on_a_cpu():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        spinning = busy_share(1)
    finally:
        spinner.kill()
        spinner.wait()
    # At least one CPU of os.cpu_count() kept busy.
    assert spinning >= 0.8 / os.cpu_count()
