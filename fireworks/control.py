"""`fireworks status | activate | deactivate | watch | history`: the monitor's HTTP API
from a terminal (FIREWORKS_API_URL)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

from models.api_model import Commands, WorkerHistory
from models.monitor_model import FleetEvent, FleetView, WorkerView
from models.worker_model import FLEET


class ApiError(Exception):
    """The monitor could not be asked, or said no; one line for the user."""


class MonitorClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {} if token is None else {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> Any:
        return self._call("GET", path)[1]

    def post(self, path: str) -> tuple[int, Any]:
        return self._call("POST", path)

    def stream(self, path: str) -> Iterator[tuple[str, str]]:
        """Server-Sent Events as (event, data), until the server ends the stream."""
        with self._open("GET", path, timeout=None) as response:
            event, data = "message", ""
            for raw in response:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif not line and data:
                    yield event, data
                    event, data = "message", ""

    def _call(self, method: str, path: str) -> tuple[int, Any]:
        with self._open(method, path, self.timeout) as response:
            return response.status, json.load(response)

    def _open(self, method: str, path: str, timeout: float | None) -> Any:
        request = urllib.request.Request(self.base_url + path, method=method, headers=self._headers)
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as error:
            if error.code == 504:  # a wait that timed out still carries the answers so far
                return error
            raise ApiError(_http_problem(error)) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ApiError(
                f"cannot reach the monitor at {self.base_url} ({reason}); "
                "is it running, and is FIREWORKS_API_URL right?"
            ) from None


def _http_problem(error: urllib.error.HTTPError) -> str:
    try:
        detail = json.load(error).get("detail", error.reason)
    except ValueError:
        detail = error.reason
    return f"the monitor answered {error.code}: {detail}"


def _quoted(worker_id: str) -> str:
    """A worker id as one path segment, whatever the user typed (the monitor then answers
    404 for an id it does not know, rather than another route answering)."""
    return urllib.parse.quote(worker_id, safe="")


def _ago(moment: datetime) -> str:
    seconds = (datetime.now(UTC) - moment).total_seconds()
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def _table(rows: list[list[str]], out: IO[str]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )


def _row(worker: WorkerView) -> list[str]:
    observed = worker.observed
    pending = " (pending)" if worker.pending_command else ""
    return [
        worker.worker_id,
        worker.liveness.value,
        "-" if worker.desired_active is None else str(worker.desired_active).lower() + pending,
        "-" if observed is None else str(observed.active).lower(),
        "-" if observed is None else str(observed.activity),
        "-" if worker.activity_rate is None else f"{worker.activity_rate:.1f}",
        _ago(worker.last_seen_at),
        "-" if worker.last_command_latency_ms is None else f"{worker.last_command_latency_ms:.1f}",
    ]


HEADER = [
    "WORKER",
    "LIVENESS",
    "DESIRED",
    "ACTIVE",
    "ACTIVITY",
    "RATE/S",
    "LAST SEEN",
    "LATENCY MS",
]


def status(client: MonitorClient, out: IO[str]) -> int:
    workers = [WorkerView.model_validate(w) for w in client.get("/api/workers")]
    if not workers:
        print("no workers known to the monitor", file=out)
        return 0
    _table([HEADER, *(_row(w) for w in workers)], out)
    return 0


def steer(
    client: MonitorClient, targets: list[str], active: bool, timeout: float, out: IO[str]
) -> int:
    """Activate or deactivate each target ('all' for the fleet) and wait for the acks."""
    action = "activate" if active else "deactivate"
    failed = False
    for target in targets:
        path = "/api/fleet" if target == FLEET else f"/api/workers/{_quoted(target)}"
        code, body = client.post(f"{path}/{action}?wait=true&timeout={timeout}")
        for result in Commands.model_validate(body).commands:
            if result.held:  # it waits in the monitor (README: when RabbitMQ goes away)
                print(f"{target}: held; the monitor sends it once back on the broker", file=out)
            elif not result.awaiting:  # the fleet's wish is kept: workers follow it on return
                print(f"{target}: sent; no worker online to answer it", file=out)
            for ack in result.acks:
                took = "" if ack.latency_ms is None else f" in {ack.latency_ms:.1f} ms"
                print(f"{ack.worker_id}: {ack.outcome}{took}", file=out)
                failed |= ack.outcome in ("expired", "unroutable")
            for worker_id in sorted(set(result.awaiting) - {a.worker_id for a in result.acks}):
                print(f"{worker_id}: no answer yet", file=out)
                failed = True
        failed |= code != 200
    return 1 if failed else 0


def watch(client: MonitorClient, out: IO[str]) -> int:
    """The fleet now, then one line per change, until Ctrl-C."""
    try:
        for event, data in client.stream("/api/stream"):
            if event == "fleet":
                view = FleetView.model_validate_json(data)
                if view.workers:
                    _table([HEADER, *(_row(w) for w in view.workers)], out)
                print("-- live --", file=out, flush=True)
            elif event == "dropped":
                raise ApiError("the monitor dropped this watch: it fell too far behind")
            else:
                print(_event_line(FleetEvent.model_validate_json(data)), file=out, flush=True)
    except KeyboardInterrupt:
        return 0
    raise ApiError("the monitor closed the stream")


def _event_line(event: FleetEvent) -> str:
    parts = [event.at.astimezone().strftime("%H:%M:%S"), event.kind.value.ljust(12)]
    if event.worker_id:
        parts.append(event.worker_id)
    if event.latency_ms is not None:
        parts.append(f"{event.latency_ms:.1f} ms")
    parts += [f"{key}={value}" for key, value in event.detail.items() if value not in (None, "")]
    return " ".join(parts)


def history(client: MonitorClient, worker_id: str, out: IO[str]) -> int:
    found = WorkerHistory.model_validate(client.get(f"/api/workers/{_quoted(worker_id)}/history"))
    if found.samples:
        rows = [["AT", "ACTIVE", "ACTIVITY"]]
        rows += [
            [
                s.at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
                str(s.active).lower(),
                str(s.activity),
            ]
            for s in found.samples
        ]
        _table(rows, out)
    for event in found.events:
        print(_event_line(event), file=out)
    return 0
