"""The benchmark harness in its short smoke mode: it runs end to end and its
correctness figures hold. Timings are reported, never asserted."""

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_DIR
from tests.stack import require_engine

pytestmark = pytest.mark.stack


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
    assert names == ["nginx static 308", "stack redirect", "stack create (POST /)"]
    for run in results["runs"]:
        assert run["requests"] > 0
        assert run["non_3xx_or_2xx"] == 0 and run["socket_errors"] == 0, run
    assert results["clicks"]["exact"], results["clicks"]
    assert results["memory_mib_under_load"] > 0
    assert (tmp_path / "benchmarks.png").stat().st_size > 10_000
    report = (tmp_path / "benchmarks.md").read_text()
    assert "of nginx's static 308" in report
