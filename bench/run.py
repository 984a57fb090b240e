#!/usr/bin/env python3
"""Benchmark the production stack against nginx's static redirect, in one run.

    python bench/run.py                 # full run; writes docs/benchmarks.md and its chart
    python bench/run.py --smoke         # a few seconds per step (CI), writes to bench/results/

Brings up docker-compose.prod.yml from a copy of the project (any Docker engine),
seeds links through the API with an API key (and 1,000,000 with `seed_links`),
then measures with wrk from the same machine:

- baseline: nginx (same image) answering a static `return 308`;
- redirect: GET /<random slug> through nginx -> app -> SQLite, clicks counted;
- create:   POST / with a new URL each time, with an API key;
- memory:   `docker stats` of the whole stack under the redirect load;
- clicks:   the clicks stored afterwards against the requests wrk completed;
- a sweep of concurrency (1-256) for the chart, and 1M links against 1k.

Figures are reported as ratios to the baseline measured in the same run:
absolute numbers on a shared machine mean little.
"""

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
from tests.project import (  # noqa: E402 - the project folder is on the path only now
    COMPOSE_FILE,
    PROJECT_DIR,
    compose_environment,
    copy_project,
    free_port,
)

COMPOSE = ["docker", "compose", "-f", COMPOSE_FILE, "-p", "shortener-bench"]
NGINX_IMAGE = "nginx:1.28-bookworm"


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


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def wrk(
    name: str,
    url: str,
    *,
    connections: int,
    seconds: float,
    script: Path | None = None,
    env: dict | None = None,
) -> WrkResult:
    threads = min(2, connections)
    command = [
        "wrk",
        "--latency",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "5s",
    ]
    if script:
        command += ["-s", str(script)]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, env={**os.environ, **(env or {})}
    ).stdout
    requests = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", output).group(1))
    duration = re.search(r"requests in ([\d.]+\w+)", output).group(1)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = to_ms(re.search(r"50%\s+([\d.]+\w+)", output).group(1))
    p99 = to_ms(re.search(r"99%\s+([\d.]+\w+)", output).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result = WrkResult(
        name=name,
        connections=connections,
        requests=requests,
        seconds=to_ms(duration) / 1000,
        rps=rps,
        p50_ms=p50,
        p99_ms=p99,
        non_3xx_or_2xx=int(bad.group(1)) if bad else 0,
        socket_errors=sum(map(int, errors.groups())) if errors else 0,
    )
    log(
        f"{name:<22} c={connections:<4} {rps:>10.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms"
        f"  bad {result.non_3xx_or_2xx} errors {result.socket_errors}"
    )
    return result


class Bench:
    def __init__(self, workdir: Path, *, workers: int, fast_path: bool, extra_env: list[str]):
        self.workdir = workdir
        self.http_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.env = compose_environment(http_port=self.http_port, backend_net="10.254.250")
        self.project = copy_project(workdir / "project")
        (self.project / ".env").write_text(
            f"DJANGO_SECRET_KEY={secrets.token_urlsafe(40)}\nDJANGO_ALLOWED_HOSTS=*\n"
            f"WEB_CONCURRENCY={workers}\nSHORTENER_REDIRECT_FAST_PATH={int(fast_path)}\n"
            + "".join(f"{setting}\n" for setting in extra_env)
        )
        self.baseline_container = ""

    def compose(self, *args: str, capture: bool = True) -> str:
        return subprocess.run(
            [*COMPOSE, *args], cwd=self.project, env=self.env, check=True, capture_output=capture, text=True
        ).stdout

    def up(self) -> None:
        log("building and starting the stack")
        self.compose("up", "-d", "--build", "--wait")
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
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.baseline_url).status_code == 308:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)

    def down(self) -> None:
        if self.baseline_container:
            subprocess.run(["docker", "rm", "-f", self.baseline_container], capture_output=True)
        subprocess.run([*COMPOSE, "down", "-v"], cwd=self.project, env=self.env, capture_output=True)

    def process_memory_mib(self) -> float:
        """Anonymous memory (the processes' own, without the page cache) of the
        stack's containers, from their cgroup's memory.stat (v2 or v1)."""
        total = 0
        for container in self.compose("ps", "-q").split():
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

    def redirects(self, slugs_file: Path, *, connections: int, seconds: float, name: str = "stack redirect"):
        """wrk GETs of random slugs from `slugs_file` through the stack."""
        return wrk(
            name,
            self.base_url,
            connections=connections,
            seconds=seconds,
            script=BENCH_DIR / "redirect.lua",
            env={"SLUGS_FILE": str(slugs_file)},
        )

    def baseline(self, *, connections: int, seconds: float) -> WrkResult:
        return wrk("nginx static 308", self.baseline_url, connections=connections, seconds=seconds)

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

    def memory_mib(self) -> float:
        """Memory used by the stack's running containers, summed."""
        containers = self.compose("ps", "-q").split()
        out = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{json .}}", *containers],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        total = 0.0
        for line in out.splitlines():
            used = json.loads(line)["MemUsage"].split("/")[0].strip()
            number, unit = re.fullmatch(r"([\d.]+)\s*([KMG]i?B|B|kB)", used).groups()
            total += (
                float(number)
                * {
                    "B": 1 / 2**20,
                    "kB": 1 / 1024,
                    "KiB": 1 / 1024,
                    "KB": 1 / 1024,
                    "MiB": 1,
                    "MB": 1,
                    "GiB": 1024,
                    "GB": 1024,
                }[unit]
            )
        return total


def profile_app_worker(bench: Bench, seconds: float, output: Path) -> subprocess.Popen | None:
    """py-spy samples one uvicorn worker of the app for `seconds` (raw, collapsed stacks)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        log("py-spy is not installed: no profile")
        return None
    container = bench.compose("ps", "-q", "app").strip()
    parent = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", container], capture_output=True, text=True, check=True
    ).stdout.strip()
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    # Worker processes, not multiprocessing's resource tracker.
    workers = [
        pid
        for pid in children
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    worker = workers[0] if workers else parent
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--nonblocking",
            "-r",
            "250",
            "-d",
            str(round(seconds)),
            "-p",
            worker,
            "-f",
            "raw",
            "-o",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


IDLE_LEAF = re.compile(r"^(Condition\.wait|Event\.wait|Connection\._recv|_recv_bytes|select|poll)\b")


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


def sample_memory_during(bench: Bench, seconds: float) -> tuple[threading.Thread, list[float]]:
    samples: list[float] = []

    def sample():
        deadline = time.monotonic() + seconds
        time.sleep(min(1.0, seconds / 3))
        while time.monotonic() < deadline - 0.5:
            try:
                samples.append(bench.memory_mib())
            except (subprocess.CalledProcessError, ValueError, AttributeError):
                pass
            time.sleep(0.5)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread, samples


def write_slugs(path: Path, slugs: list[str]) -> Path:
    path.write_text("\n".join(slugs) + "\n")
    return path


def run(args) -> dict:
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    seconds = 3 if args.smoke else args.seconds
    links = 50 if args.smoke else args.links
    sweep = [1, 16] if args.smoke else [1, 4, 16, 64, 128, 256]
    results: dict = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "workers": args.workers,
        "fast_path": not args.no_fast_path,
        "links": links,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "runs": [],
        "sweep": [],
    }
    with tempfile.TemporaryDirectory(prefix="shortener-bench-") as tmp:
        bench = Bench(Path(tmp), workers=args.workers, fast_path=not args.no_fast_path, extra_env=args.env)
        try:
            bench.up()
            api_key = bench.manage("issue_api_key", "--name", "bench").split()[-1]
            slugs_file = write_slugs(Path(tmp) / "slugs.txt", bench.seed_through_api(links, api_key))
            # Warm up: both nginx and the app's caches, as in steady production.
            bench.redirects(slugs_file, connections=16, seconds=min(2, seconds), name="warm-up")
            time.sleep(2.5)  # let the warm-up's clicks reach the database first
            clicks_before = bench.total_clicks()

            baseline = bench.baseline(connections=64, seconds=seconds)
            redirect = bench.redirects(slugs_file, connections=64, seconds=seconds)
            results["runs"] += [asdict(baseline), asdict(redirect)]
            # Memory and the profile under the same load, in a run of their own:
            # docker stats and py-spy would take CPU from the measured run.
            sampler, memory = sample_memory_during(bench, seconds)
            profiler = profile_app_worker(bench, seconds - 1, Path(tmp) / "1k.txt") if args.profile else None
            sampled = bench.redirects(slugs_file, connections=64, seconds=seconds, name="redirect, sampled")
            sampler.join()
            if profiler:
                profiler.wait()
                results["profile_1k"] = summarize_profile(Path(tmp) / "1k.txt")
            redirect_requests = redirect.requests + sampled.requests
            results["memory_mib_under_load"] = max(memory) if memory else None
            results["memory_mib_idle"] = bench.memory_mib()
            results["process_memory_mib"] = bench.process_memory_mib()

            for connections in sweep:
                step = max(2, seconds / 2)
                base = bench.baseline(connections=connections, seconds=step)
                stack = bench.redirects(slugs_file, connections=connections, seconds=step)
                redirect_requests += stack.requests
                results["sweep"].append({"baseline": asdict(base), "stack": asdict(stack)})

            time.sleep(2.5)  # one flush interval and then some
            stored = bench.total_clicks() - clicks_before
            # wrk stops counting with requests in flight: the server may have
            # answered (and counted) up to one more per connection per run.
            in_flight = 2 * 64 + sum(sweep)
            results["clicks"] = {
                "requests_completed": redirect_requests,
                "clicks_stored": stored,
                "difference": stored - redirect_requests,
                "in_flight_bound": in_flight,
                "exact": 0 <= stored - redirect_requests <= in_flight,
            }
            log(f"clicks stored {stored}, requests completed {redirect_requests}")

            create = wrk(
                "stack create (POST /)",
                bench.base_url,
                connections=16,
                seconds=seconds,
                script=BENCH_DIR / "create.lua",
                env={"API_KEY": api_key},
            )
            results["runs"].append(asdict(create))

            if args.million and not args.smoke:
                log(f"seeding {args.million} links with seed_links")
                started = time.monotonic()
                big = bench.manage("seed_links", "--count", str(args.million)).split()
                results["million_seed_seconds"] = round(time.monotonic() - started, 1)
                big_file = write_slugs(Path(tmp) / "big.txt", big)
                bench.redirects(big_file, connections=16, seconds=2, name="warm-up")
                baseline_again = bench.baseline(connections=64, seconds=seconds)
                many = bench.redirects(
                    big_file, connections=64, seconds=seconds, name=f"redirect, {len(big) + links} links"
                )
                if args.profile:
                    profiler = profile_app_worker(bench, seconds - 1, Path(tmp) / "1m.txt")
                    bench.redirects(big_file, connections=64, seconds=seconds, name="1M redirect, sampled")
                    if profiler:
                        profiler.wait()
                        results["profile_1m"] = summarize_profile(Path(tmp) / "1m.txt")
                results["runs"] += [asdict(baseline_again), asdict(many)]
                results["million"] = {
                    "links": len(big) + links,
                    "rps": many.rps,
                    "ratio_to_1k": many.rps / redirect.rps,
                    "memory_mib_after": bench.memory_mib(),
                    "process_memory_mib_after": bench.process_memory_mib(),
                }
        finally:
            bench.down()
    results["baseline_rps"] = baseline.rps
    results["redirect_ratio"] = redirect.rps / baseline.rps
    return results


def table(results: dict) -> str:
    baseline = results["baseline_rps"]
    lines = [
        "| step | connections | requests/s | p50 ms | p99 ms | ratio to nginx static 308 | non-3xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in results["runs"]:
        lines.append(
            f"| {run['name']} | {run['connections']} | {run['rps']:,.0f} | {run['p50_ms']:.2f} | "
            f"{run['p99_ms']:.2f} | {run['rps'] / baseline:.1%} | "
            f"{run['non_3xx_or_2xx'] + run['socket_errors']} |"
        )
    return "\n".join(lines)


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    connections = [point["stack"]["connections"] for point in results["sweep"]]
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("baseline", "nginx static 308"), ("stack", "stack redirect (nginx → app → SQLite)")):
        throughput.plot(connections, [p[key]["rps"] for p in results["sweep"]], marker="o", label=label)
        latency.plot(connections, [p[key]["p99_ms"] for p in results["sweep"]], marker="o", label=label)
    for axis, title, unit in ((throughput, "Throughput", "requests/s"), (latency, "p99 latency", "ms")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(connections, [str(c) for c in connections])
        axis.set_xlabel("concurrent connections")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def report(results: dict, chart_name: str, command: str) -> str:
    clicks = results["clicks"]
    memory = results.get("memory_mib_under_load")
    million = results.get("million")
    lines = [
        "# Benchmarks",
        "",
        f"Latest run: {results['started']} on {results['machine']}; wrk on the same cores as the stack.",
        f"Command: `{command}`. Stack: {results['workers']} uvicorn worker(s), fast path "
        f"{'on' if results['fast_path'] else 'off'}, {results['links']} links seeded through the API.",
        "",
        table(results),
        "",
        f"- **Redirect throughput: {results['redirect_ratio']:.1%} of nginx's static 308** measured in the "
        "same run (target ≥ 10 %).",
        f"- Clicks: {clicks['clicks_stored']:,} stored for {clicks['requests_completed']:,} redirects "
        "completed "
        f"(difference {clicks['difference']:+d}, at most {clicks['in_flight_bound']} allowed: requests in "
        "flight when wrk stopped counting, answered and counted by the server).",
        f"- Memory of the whole stack (nginx + app) under the redirect load: "
        f"{memory:.0f} MiB (target ≤ 300 MiB)."
        if memory
        else "- Memory: not measured.",
    ]
    if million:
        lines.append(
            f"- With {million['links']:,} links: {million['rps']:,.0f} requests/s, "
            f"{million['ratio_to_1k']:.1%} of the 1,000-link figure (target ≥ 90 %); stack memory "
            f"afterwards {million['memory_mib_after']:.0f} MiB by `docker stats`, of which "
            f"{million['process_memory_mib_after']:.0f} MiB the processes' own (the rest is the page cache "
            f"of the database file, which the kernel gives back under pressure); seeding took "
            f"{results['million_seed_seconds']} s."
        )
    lines += [
        "",
        f"![Throughput and p99 against concurrency]({chart_name})",
        "",
        "What each optimisation was worth, what was tried and dropped, and what bounds the "
        "1,000,000-link case: [performance.md](performance.md).",
        "",
    ]
    for key, title in (
        ("profile_1k", "1,000 links"),
        ("profile_1m", f"{million['links']:,} links" if million else ""),
    ):
        if results.get(key):
            lines += [
                f"### Where one app worker's time goes: redirects over {title}",
                "",
                "py-spy samples of one uvicorn worker during the 64-connection run: self time, idle "
                "waits left out; `Runner.run` is time inside uvloop's C code (polling and socket I/O).",
                "",
                "| function | share of samples |",
                "| --- | ---: |",
            ]
            lines += [f"| `{name}` | {share:.1%} |" for name, share in results[key]]
            lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="a few seconds per step; no 1M-link phase")
    parser.add_argument("--seconds", type=float, default=10, help="duration of each main step")
    parser.add_argument("--links", type=int, default=1000)
    parser.add_argument("--million", type=int, default=1_000_000, help="links for the large phase (0: skip)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (WEB_CONCURRENCY)")
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
        "--output", type=Path, help="folder for results (default docs/, or bench/results/ with --smoke)"
    )
    args = parser.parse_args()
    output = args.output or (BENCH_DIR / "results" if args.smoke else PROJECT_DIR / "docs")
    output.mkdir(parents=True, exist_ok=True)
    results = run(args)
    command = "python bench/run.py " + " ".join(sys.argv[1:])
    (output / "benchmarks.json").write_text(json.dumps(results, indent=2))
    chart(results, output / "benchmarks.png")
    (output / "benchmarks.md").write_text(report(results, "benchmarks.png", command.strip()))
    print(table(results))
    print(
        f"redirect: {results['redirect_ratio']:.1%} of nginx static 308; clicks {results['clicks']}; "
        f"memory {results.get('memory_mib_under_load')} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
