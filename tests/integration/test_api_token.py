"""The API token (FIREWORKS_API_TOKEN): writes need it always, reads unless opened; the
CLI sends it; /healthz and the page itself stay open."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from harness import ProcessFleet, wait_for

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def fleet(process_fleet: ProcessFleet) -> ProcessFleet:
    return process_fleet


def listed(api: str) -> set[str]:
    answer = httpx.get(f"{api}/api/workers", headers=AUTH, timeout=10).raise_for_status()
    return {worker["worker_id"] for worker in answer.json()}


def test_reads_and_writes_need_the_token(fleet: ProcessFleet) -> None:
    api = fleet.start_monitor(FIREWORKS_API_TOKEN=TOKEN).api
    fleet.start_worker("w1")
    wait_for(lambda: listed(api) == {"w1"}, 20, "w1 listed")

    for method, path in [
        ("GET", "/api/workers"),
        ("GET", "/api/workers/w1"),
        ("GET", "/api/events"),
        ("GET", "/api/workers/w1/history"),
        ("GET", "/metrics"),
        ("POST", "/api/workers/w1/activate"),
        ("POST", "/api/fleet/deactivate"),
    ]:
        bare = httpx.request(method, api + path, timeout=10)
        assert bare.status_code == 401, (method, path, bare.text)
        assert bare.headers["www-authenticate"] == "Bearer"
        wrong = httpx.request(method, api + path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401, (method, path)
    assert httpx.get(f"{api}/api/workers/w1", headers=AUTH).status_code == 200
    acted = httpx.post(f"{api}/api/workers/w1/activate?wait=true", headers=AUTH, timeout=15)
    assert acted.status_code == 200, acted.text
    # Open: the health check, the page, the schema.
    for path in ("/healthz", "/", "/openapi.json"):
        assert httpx.get(api + path, timeout=10).status_code == 200, path


def test_the_stream_takes_the_token_in_its_url(fleet: ProcessFleet) -> None:
    api = fleet.start_monitor(FIREWORKS_API_TOKEN=TOKEN).api
    assert httpx.get(f"{api}/api/stream", timeout=10).status_code == 401
    assert httpx.get(f"{api}/api/workers?access_token={TOKEN}").status_code == 401  # stream only
    with httpx.stream("GET", f"{api}/api/stream?access_token={TOKEN}", timeout=10) as answer:
        assert answer.status_code == 200
        assert next(answer.iter_lines()) == "event: fleet"


def test_opened_reads_still_guard_writes(fleet: ProcessFleet) -> None:
    api = fleet.start_monitor(FIREWORKS_API_TOKEN=TOKEN, FIREWORKS_API_OPEN_READS="true").api
    fleet.start_worker("w1")
    wait_for(lambda: listed(api) == {"w1"}, 20, "w1 listed")
    assert httpx.get(f"{api}/api/workers", timeout=10).status_code == 200
    assert httpx.get(f"{api}/metrics", timeout=10).status_code == 200
    assert httpx.post(f"{api}/api/workers/w1/activate", timeout=10).status_code == 401


def test_the_cli_sends_the_token(fleet: ProcessFleet, tmp_path: Path) -> None:
    api = fleet.start_monitor(FIREWORKS_API_TOKEN=TOKEN).api
    fleet.start_worker("w1")
    wait_for(lambda: listed(api) == {"w1"}, 20, "w1 listed")

    def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fireworks", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "FIREWORKS_API_URL": api, **env},
        )

    refused = cli("activate", "w1")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "fireworks: the monitor answered 401: a valid API token is required (FIREWORKS_API_TOKEN)"
    ]
    done = cli("activate", "w1", FIREWORKS_API_TOKEN=TOKEN)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("w1: applied in ")
