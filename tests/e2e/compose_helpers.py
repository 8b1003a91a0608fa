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
`CI` is set (see `require_compose`). Tests that look inside the containers (state,
health, each container's own log) also need the `docker` CLI (`require_docker_cli`).
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
# What compose substitutes into docker-compose.yml (passwords, settings).
DOTENV_FILE = REPO_ROOT / ".env"
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
DOCKER_TIMEOUT = 60.0

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
        _unavailable(f"compose stack unavailable: {error}")


def require_docker_cli() -> None:
    """The `docker` CLI (container state and logs by id), or skip / fail (with CI set)."""
    if shutil.which("docker") is None:
        _unavailable("the docker CLI is not on PATH (needed to inspect the containers)")


def _unavailable(reason: str) -> NoReturn:
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

    def container_ids(self, service: str) -> list[str]:
        """Full ids of the service's containers, running or not."""
        return self.run("ps", "-a", "-q", service, timeout=PROBE_TIMEOUT).stdout.split()

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


def dotenv_values(path: Path = DOTENV_FILE) -> dict[str, str]:
    """The KEY=VALUE lines of a .env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, sep, value = text.partition("=")
        if sep:
            values[name.strip()] = value.strip()
    return values


def record_time(record: Mapping[str, Any]) -> datetime | None:
    """A JSON log record's "time" ("YYYY-mm-dd HH:MM:SS,mmm", the container's clock in
    UTC, as the images have no other zone) as an aware datetime; None if absent."""
    value = record.get("time")
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
    except ValueError:
        return None


# -- the docker CLI: containers by id ------------------------------------------------


def docker(
    *args: str, timeout: float = DOCKER_TIMEOUT, check: bool = True
) -> subprocess.CompletedProcess[str]:
    command = ["docker", *args]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise ComposeError(f"`{shlex.join(command)}` timed out after {timeout:.0f} s") from error
    except OSError as error:
        raise ComposeError(f"`{shlex.join(command)}` could not run: {error}") from error
    if check and result.returncode != 0:
        raise ComposeError(
            f"`{shlex.join(command)}` exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


@dataclass(frozen=True)
class ContainerState:
    """The parts of `docker inspect` that tell whether a container stayed up."""

    id: str
    name: str
    service: str
    status: str  # created, running, restarting, exited, ...
    running: bool
    started_at: str  # changes whenever the container (re)starts, whoever started it
    restart_count: int  # restarts by the restart policy only
    exit_code: int
    health: str | None  # starting, healthy, unhealthy; None without a healthcheck

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any]) -> ContainerState:
        state = data.get("State") or {}
        labels = (data.get("Config") or {}).get("Labels") or {}
        health = state.get("Health")
        return cls(
            id=str(data.get("Id", "")),
            name=str(data.get("Name", "")).lstrip("/"),
            service=str(labels.get("com.docker.compose.service", "")),
            status=str(state.get("Status", "")),
            running=bool(state.get("Running")),
            started_at=str(state.get("StartedAt", "")),
            restart_count=int(data.get("RestartCount") or 0),
            exit_code=int(state.get("ExitCode") or 0),
            health=str(health.get("Status")) if isinstance(health, dict) else None,
        )

    def brief(self) -> str:
        health = "" if self.health is None else f" health={self.health}"
        return (
            f"{self.name} {self.status}{health} started={self.started_at} "
            f"restarts={self.restart_count} exit={self.exit_code}"
        )


def inspect_containers(ids: Sequence[str]) -> dict[str, ContainerState]:
    """The containers' states by full id; one that no longer exists is absent."""
    if not ids:
        return {}
    # Exits 1 when one of them is gone, yet still prints the others.
    result = docker("inspect", *ids, check=False)
    try:
        entries = json.loads(result.stdout or "[]")
    except json.JSONDecodeError as error:
        raise ComposeError(f"`docker inspect` printed no JSON: {result.stderr[-1000:]}") from error
    states = (ContainerState.from_inspect(entry) for entry in entries if isinstance(entry, dict))
    return {state.id: state for state in states}


def container_output(container_id: str) -> tuple[str, str]:
    """Everything a container wrote so far, in order: (stdout, stderr)."""
    result = docker("logs", container_id, timeout=LOGS_TIMEOUT)
    return result.stdout, result.stderr
