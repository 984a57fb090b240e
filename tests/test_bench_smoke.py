"""The benchmark harness: its short smoke mode runs end to end against the stack
and its correctness figures hold; its mixes and parsers in-process. Timings are
reported, never asserted."""

import json
import random
import shutil
import subprocess
import sys
from collections import Counter

import pytest

from bench.memory import parse_mem_usage
from bench.mixes import zipf_indices
from tests.conftest import PROJECT_DIR
from tests.stack import require_engine


@pytest.mark.stack
def test_benchmark_harness_smoke_run(tmp_path):
    require_engine()
    if not shutil.which("wrk"):
        pytest.skip("wrk is not installed (apt-get install wrk)")
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--output", str(tmp_path)],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    results = json.loads((tmp_path / "benchmarks.json").read_text())
    names = [run["name"] for run in results["runs"]]
    assert names == ["nginx static 308", "stack redirect", "stack redirect, Zipf", "stack create (POST /)"]
    for run in results["runs"] + [step for point in results["sweep"] for step in point.values()]:
        # Figures from wrk's done() hook: requests over the measured duration.
        assert run["requests"] > 0 and run["seconds"] > 0, run
        assert run["rps"] == pytest.approx(run["requests"] / run["seconds"]), run
        assert 0 < run["p50_ms"] <= run["p99_ms"], run
        assert run["non_3xx_or_2xx"] == 0 and run["socket_errors"] == 0, run
    assert [point["stack"]["connections"] for point in results["sweep"]] == [1, 16]
    assert results["clicks"]["exact"], results["clicks"]
    assert results["memory_mib_under_load"] > 0
    assert results["process_memory_mib"] > 0
    assert results["create_rps"] == results["runs"][-1]["rps"] > 0
    assert (tmp_path / "benchmarks.png").stat().st_size > 10_000
    report = (tmp_path / "benchmarks.md").read_text()
    assert "of nginx's static 308" in report
    assert "with the Zipf (s = 1.1) mix" in report
    assert (
        f"Creation (POST / with an API key, 16 connections): {results['create_rps']:,.0f} links/s" in report
    )
    # The stack and the baseline container are gone.
    for name in ("shortener-bench", "nginx:1.28"):
        left = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"name={name}"], capture_output=True, text=True
        )
        assert left.stdout.strip() == "", name


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
