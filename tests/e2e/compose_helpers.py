"""Find a compose command and base images, and drive one throwaway compose project.

Reusable by every test that brings up the real stack (`docker-compose.yml`).

Where things come from, first match wins:

- compose command: env `FIREWORKS_COMPOSE` (e.g. "docker compose"); else the shared
  tool `../shared/tools/docker-engine` (starts dockerd if needed, prints the command
  on its last line); else `docker compose` or `docker-compose` found on PATH.
- base images: env `PYTHON_IMAGE` / `RABBITMQ_IMAGE` when set; else the shared tool
  `../shared/tools/offline-images` (stand-ins for machines without a registry);
  else the compose file's defaults (the public images).

Without any of them the stack is unavailable: tests skip locally and fail when
`CI` is set (see `require_compose`).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
SHARED_TOOLS = REPO_ROOT.parent / "shared" / "tools"
DOCKER_ENGINE_TOOL = SHARED_TOOLS / "docker-engine"
OFFLINE_IMAGES_TOOL = SHARED_TOOLS / "offline-images"

# Subprocess time limits, in seconds. The shared tools may install packages or
# debootstrap an image on a fresh machine, hence the generous ones.
ENGINE_TOOL_TIMEOUT = 600.0
IMAGES_TOOL_TIMEOUT = 1200.0
PROBE_TIMEOUT = 30.0
UP_TIMEOUT = 420.0
DOWN_TIMEOUT = 120.0
LOGS_TIMEOUT = 60.0

IMAGE_VARIABLES = ("PYTHON_IMAGE", "RABBITMQ_IMAGE")


class ComposeUnavailable(Exception):
    """No way to run the compose stack on this machine; the message says why."""


class ComposeError(Exception):
    """A compose command failed; the message carries its output."""


def require_compose() -> Compose:
    """The compose command and images, or skip (locally) / fail (with CI set)."""
    try:
        return find_compose()
    except ComposeUnavailable as error:
        reason = f"compose stack unavailable: {error}"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def find_compose() -> Compose:
    command = _compose_command()
    return Compose(command=command, images=_base_images())


def _compose_command() -> list[str]:
    explicit = os.environ.get("FIREWORKS_COMPOSE", "").strip()
    if explicit:
        return shlex.split(explicit)
    if DOCKER_ENGINE_TOOL.is_file():
        output = _run_tool(DOCKER_ENGINE_TOOL, ENGINE_TOOL_TIMEOUT)
        lines = output.strip().splitlines()
        if not lines:
            raise ComposeUnavailable(f"{DOCKER_ENGINE_TOOL} printed no compose command")
        return shlex.split(lines[-1])
    for candidate in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(candidate[0]) and _succeeds([*candidate, "version"]):
            if not _succeeds(["docker", "info"]):
                raise ComposeUnavailable("`docker info` fails: is the Docker engine running?")
            return candidate
    raise ComposeUnavailable(
        "neither FIREWORKS_COMPOSE, nor "
        f"{DOCKER_ENGINE_TOOL}, nor `docker compose` / `docker-compose` on PATH"
    )


def _base_images() -> dict[str, str]:
    """PYTHON_IMAGE / RABBITMQ_IMAGE to hand to compose; empty means the public defaults."""
    given = {name: os.environ[name] for name in IMAGE_VARIABLES if os.environ.get(name)}
    if len(given) == len(IMAGE_VARIABLES) or not OFFLINE_IMAGES_TOOL.is_file():
        return given
    output = _run_tool(OFFLINE_IMAGES_TOOL, IMAGES_TOOL_TIMEOUT)
    built: dict[str, str] = {}
    for line in output.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name in IMAGE_VARIABLES and value:
            built[name] = value
    missing = [name for name in IMAGE_VARIABLES if name not in built]
    if missing:
        raise ComposeUnavailable(f"{OFFLINE_IMAGES_TOOL} did not print {', '.join(missing)}")
    return {**built, **given}


def _run_tool(tool: Path, timeout: float) -> str:
    try:
        result = subprocess.run(
            [str(tool)], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise ComposeUnavailable(f"{tool} did not finish within {timeout:.0f} s") from None
    except OSError as error:
        raise ComposeUnavailable(f"{tool} could not run: {error}") from None
    if result.returncode != 0:
        raise ComposeUnavailable(
            f"{tool} exited {result.returncode}: {(result.stderr or result.stdout).strip()[-2000:]}"
        )
    return result.stdout


def _succeeds(command: Sequence[str]) -> bool:
    try:
        result = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def free_local_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (to publish a container port on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Compose:
    """How to run compose here: the command and the base images to pass to it."""

    command: list[str]
    images: dict[str, str]

    def project(self, prefix: str = "fwe2e", env: Mapping[str, str] | None = None) -> Project:
        """A compose project with a unique name, so runs never share containers."""
        name = f"{prefix}{uuid.uuid4().hex[:10]}"
        return Project(self, name, {**self.images, **(env or {})})


@dataclass
class Project:
    """One compose project (`-p NAME`) of the repository's docker-compose.yml."""

    compose: Compose
    name: str
    # Variables for compose's substitution in docker-compose.yml (they win over .env).
    env: dict[str, str] = field(default_factory=dict)

    def run(
        self, *args: str, timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [*self.compose.command, "-f", str(COMPOSE_FILE), "-p", self.name, *args]
        try:
            result = subprocess.run(
                command,
                cwd=REPO_ROOT,
                env={**os.environ, **self.env},
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise ComposeError(
                f"`{shlex.join(command)}` timed out after {timeout:.0f} s"
            ) from error
        if check and result.returncode != 0:
            raise ComposeError(
                f"`{shlex.join(command)}` exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def up(self, *args: str, timeout: float = UP_TIMEOUT) -> None:
        self.run("up", *args, timeout=timeout)

    def logs(self, *services: str, tail: int | None = None) -> str:
        extra = [] if tail is None else [f"--tail={tail}"]
        return self.run("logs", "--no-color", *extra, *services, timeout=LOGS_TIMEOUT).stdout

    def down(self) -> None:
        """Remove containers, network and volumes, then this project's image tags.

        The tags go with `--no-prune`: the cached layers stay, so the next run's
        build (under another project name) is quick again.
        """
        try:
            self.run("down", "-v", "--remove-orphans", timeout=DOWN_TIMEOUT)
        finally:
            self._untag_images()

    def _untag_images(self) -> None:
        if shutil.which("docker") is None:
            return
        # Compose v1 names built images PROJECT_SERVICE, Compose v2 PROJECT-SERVICE.
        tags = [f"{self.name}{sep}{service}" for sep in "_-" for service in ("monitor", "workers")]
        for tag in tags:
            subprocess.run(
                ["docker", "image", "rm", "--no-prune", tag],
                capture_output=True,
                timeout=PROBE_TIMEOUT,
                check=False,
            )

    def safe_logs(self, *services: str, tail: int = 200) -> str:
        """Services' logs (all by default) for a failure report; never raises."""
        try:
            return self.logs(*services, tail=tail)
        except ComposeError as error:
            return f"(could not read logs: {error})"


def json_log_records(logs: str) -> Iterator[dict[str, Any]]:
    """The JSON log records (LOG_FORMAT=json) in `compose logs --no-color` output.

    Each line reads `SERVICE_N   | {...}` (v1) or `SERVICE-N  | {...}` (v2);
    lines that are not JSON objects (compose's own, tracebacks) are skipped.
    """
    for line in logs.splitlines():
        _, sep, payload = line.partition("| ")
        text = (payload if sep else line).strip()
        if not text.startswith("{"):
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            yield record
