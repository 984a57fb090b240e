"""schemathesis against the live API's own OpenAPI schema, with an API key:
no request it generates may get a 5xx, or a status code the schema does not
document for that operation."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import running_site

ST = Path(sys.executable).with_name("st")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with running_site(tmp_path_factory.mktemp("schemathesis"), workers=1) as (site, _process):
        yield site


def test_the_api_answers_only_what_its_schema_documents(site, tmp_path):
    if not ST.exists() and shutil.which("st") is None:
        pytest.skip("schemathesis is not installed (requirements-dev.txt)")
    key = site.manage("issue_api_key", "--name", "schemathesis").stdout.split()[-1]
    # Real data behind the schema's example slug, so the link operations are reached.
    created = httpx.post(site.base_url + "/", json={"url": "https://example.com/launch", "slug": "launch"})
    assert created.status_code == 201
    result = subprocess.run(
        [
            str(ST if ST.exists() else shutil.which("st")),
            "run",
            f"{site.base_url}/api/schema/?format=json",
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            "not_a_server_error,status_code_conformance",
            "--max-examples",
            "40",
            "--seed",
            "20261129",
            "--generation-database",
            ":memory:",
            "--request-timeout",
            "20",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    # Every operation of the schema was exercised, none skipped.
    selected = re.search(r"Selected: (\d+)/(\d+)", result.stdout)
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert selected and tested, result.stdout[-3000:]
    assert selected.group(1) == selected.group(2) == tested.group(1), result.stdout[-3000:]
    assert int(tested.group(1)) >= 10
