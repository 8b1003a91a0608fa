"""The monitor's HTTP API (FastAPI). It runs on uvicorn's thread; everything that
touches the fleet runs on the bus thread, handed over with `call_threadsafe`."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path as FilePath
from typing import Annotated, Any
from uuid import UUID

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, SecretStr

from bus.errors import SettingsError
from bus.logs import fields
from models.api_model import AckReport, CommandResult, Commands, Health, WorkerHistory
from models.messages import Outcome
from models.monitor_model import EventKind, FleetEvent, FleetView, WorkerSample, WorkerView
from models.worker_model import FLEET
from monitor.metrics import Metrics
from monitor.monitor import MonitorService
from monitor.registry import Registry, UnknownWorker
from monitor.store import HistoryStore

log = logging.getLogger("fireworks.api")
# A live client that falls this far behind is dropped rather than slowing anyone.
STREAM_BACKLOG = 1000
KEEPALIVE = 15.0
STREAM_RETRY_AFTER = 10  # seconds a client refused a stream is asked to wait
# The dashboard (served at /): plain files, installed with the package.
STATIC = FilePath(__file__).with_name("static")


def _not_a_number(value: object) -> object:
    """A time is ISO 8601 with a zone; pydantic alone would take a number for Unix time."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("a time is ISO 8601 with a zone, not a number")
    return value


def _in_utc(value: datetime | None) -> datetime | None:
    """Times are compared in UTC; one that has no UTC equivalent is bad input, not a 500."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("a time between years 1 and 9999 in UTC") from None


WaitQuery = Annotated[bool, Query(description="answer once every worker acknowledged")]
TimeoutQuery = Annotated[float, Query(gt=0, le=300, description="seconds to wait")]
Since = Annotated[
    AwareDatetime | None,
    BeforeValidator(_not_a_number),
    AfterValidator(_in_utc),
    Query(description="from (ISO 8601 with zone)"),
]
Until = Annotated[
    AwareDatetime | None,
    BeforeValidator(_not_a_number),
    AfterValidator(_in_utc),
    Query(description="to (ISO 8601 with zone)"),
]
Limit = Annotated[int, Query(gt=0, le=10_000)]


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


def _ref(model: type[Any]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


# One event of /api/stream, as OpenAPI 3.2 documents Server-Sent Events (`itemSchema`).
STREAM_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "oneOf": [
        {
            "properties": {
                "event": {"const": "fleet"},
                "data": _json(
                    {
                        "type": "object",
                        "required": list(FleetView.model_fields),
                        "properties": {
                            "fleet_desired_active": {"type": ["boolean", "null"]},
                            "workers": {"type": "array", "items": _ref(WorkerView)},
                        },
                    }
                ),
            }
        },
        {
            "properties": {
                "event": {"enum": [kind.value for kind in EventKind]},
                "data": _json(_ref(FleetEvent)),
            }
        },
        {"properties": {"event": {"const": "dropped"}, "data": _json({"type": "object"})}},
    ],
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such worker"}}
HISTORY_OFF = "history is off (FIREWORKS_DB is empty)"


class Action(StrEnum):
    ACTIVATE = "activate"
    DEACTIVATE = "deactivate"


class EventHub:
    """Fans events out from the bus thread to the API's live clients (on its loop)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: set[asyncio.Queue[FleetEvent | None]] = set()
        self.closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, event: FleetEvent) -> None:
        """Called on the bus thread: never waits. With nobody listening it does not wake
        the API's loop at all (that cost every command a thread switch). A client that
        subscribes meanwhile misses nothing: it is added before it reads the fleet."""
        if self._loop is not None and self._queues:
            self._loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: FleetEvent) -> None:
        for queue in list(self._queues):
            if queue.qsize() >= STREAM_BACKLOG - 1:
                self._queues.discard(queue)
                queue.put_nowait(None)  # tells the client it was dropped
            else:
                queue.put_nowait(event)

    def close(self) -> None:
        """Ends every live client (the server is stopping: a stream left open would hold
        up uvicorn's shutdown, and with it the monitor's). From any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._close)

    def _close(self) -> None:
        self.closed = True
        for queue in list(self._queues):
            self._queues.discard(queue)
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    def __len__(self) -> int:
        """Live clients now."""
        return len(self._queues)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[FleetEvent | None]]:
        queue: asyncio.Queue[FleetEvent | None] = asyncio.Queue(STREAM_BACKLOG)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)


def _check(token: SecretStr) -> Callable[[Request], None]:
    """A dependency that lets a request through only with the API token: the
    `Authorization: Bearer` header, or (for the event stream, which browsers open
    without headers) the `access_token` query parameter. Compared in constant time."""
    expected = token.get_secret_value().encode()

    def check(request: Request) -> None:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" and request.url.path == "/api/stream":
            presented = request.query_params.get("access_token", "")
        elif scheme.lower() != "bearer":
            presented = ""
        if not hmac.compare_digest(presented.encode(), expected):
            raise HTTPException(
                401,
                "a valid API token is required (FIREWORKS_API_TOKEN)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


def create_app(service: MonitorService, metrics: Metrics, hub: EventHub) -> FastAPI:
    bus, store = service.bus, service.store

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub.bind(asyncio.get_running_loop())
        yield

    settings = service.settings
    token = settings.fireworks_api_token
    reads = [] if token is None or settings.fireworks_api_open_reads else [Depends(_check(token))]
    writes = [] if token is None else [Depends(_check(token))]

    def history() -> HistoryStore:
        """What the history endpoints read, or their 404 when history is off."""
        if store is None:
            raise HTTPException(404, HISTORY_OFF)
        return store

    app = FastAPI(
        title="Fireworks monitor",
        description="Steer and watch a fleet of workers over RabbitMQ.",
        lifespan=lifespan,
    )

    def worker_view(worker_id: str) -> WorkerView:
        try:
            return service.read(lambda registry: registry.worker(worker_id))
        except UnknownWorker:
            raise HTTPException(404, f"no worker {worker_id!r}") from None

    async def steer(target: str, action: Action, wait: bool, timeout: float) -> Response:
        active = action is Action.ACTIVATE
        with hub.subscribe() as events:  # before the command: no answer can be missed
            try:
                issued = service.command(target, active)
            except UnknownWorker:
                raise HTTPException(404, f"no worker {target!r}") from None
            command_id, awaiting = issued.command.command_id, issued.awaiting
            acks: dict[str, AckReport] = {}
            if wait:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        while len(acks) < len(awaiting):
                            event = await events.get()
                            if event is None:
                                break
                            report = _answer(event, command_id, awaiting)
                            if report is not None:
                                acks.setdefault(report.worker_id, report)
        result = CommandResult(
            command_id=command_id,
            target=target,
            active=active,
            awaiting=awaiting,
            held=not bus.connected,
            acks=sorted(acks.values(), key=lambda a: a.worker_id),
            complete=len(acks) == len(awaiting),
        )
        status = 202 if not wait else 200 if result.complete else 504
        body = Commands(commands=[result]).model_dump_json()
        return Response(body, status_code=status, media_type="application/json")

    @app.get("/api/workers", response_model=list[WorkerView], dependencies=reads)
    async def list_workers() -> list[WorkerView]:
        return service.read(Registry.view).workers

    @app.get(
        "/api/workers/{worker_id}",
        response_model=WorkerView,
        dependencies=reads,
        responses=NOT_FOUND,
    )
    async def get_worker(worker_id: str) -> WorkerView:
        return worker_view(worker_id)

    # Before the POST below, whose `{action}` also matches `history`: Starlette answers a
    # method no route of a path takes with the first such route's `Allow` (GET here).
    @app.get(
        "/api/workers/{worker_id}/history",
        response_model=WorkerHistory,
        dependencies=reads,
        responses={404: {"description": "no such worker, or history is off"}},
    )
    async def worker_history(
        worker_id: Annotated[str, Path()],
        since: Since = None,
        until: Until = None,
        limit: Limit = 1000,
    ) -> WorkerHistory:
        kept = history()
        try:
            current: WorkerView | None = worker_view(worker_id)
        except HTTPException:
            if not await asyncio.to_thread(kept.known, worker_id):
                raise
            current = None
        samples = await asyncio.to_thread(kept.samples, worker_id, since, until, limit)
        events = await asyncio.to_thread(kept.events, since, until, worker_id, limit)
        return WorkerHistory(worker=current, samples=samples, events=events)

    @app.post(
        "/api/workers/{worker_id}/{action}",
        dependencies=writes,
        response_model=Commands,
        status_code=202,
        responses={200: {"model": Commands}, **NOT_FOUND, 504: {"model": Commands}},
    )
    async def steer_worker(
        worker_id: str, action: Action, wait: WaitQuery = False, timeout: TimeoutQuery = 10.0
    ) -> Response:
        if worker_id == FLEET:  # a worker can't be called that; the fleet has its own path
            raise HTTPException(404, f"no worker {worker_id!r}; see /api/fleet")
        return await steer(worker_id, action, wait, timeout)

    @app.post(
        "/api/fleet/{action}",
        dependencies=writes,
        response_model=Commands,
        status_code=202,
        responses={200: {"model": Commands}, 504: {"model": Commands}},
    )
    async def steer_fleet(
        action: Action, wait: WaitQuery = False, timeout: TimeoutQuery = 10.0
    ) -> Response:
        return await steer(FLEET, action, wait, timeout)

    @app.get(
        "/api/events",
        response_model=list[FleetEvent],
        dependencies=reads,
        responses={404: {"description": HISTORY_OFF}},
    )
    async def events(
        since: Since = None, until: Until = None, worker: str | None = None, limit: Limit = 1000
    ) -> list[FleetEvent]:
        return await asyncio.to_thread(history().events, since, until, worker, limit)

    @app.get(
        "/api/samples",
        response_model=list[WorkerSample],
        dependencies=reads,
        responses={404: {"description": HISTORY_OFF}},
    )
    async def samples(
        since: Since = None, until: Until = None, worker: str | None = None, limit: Limit = 1000
    ) -> list[WorkerSample]:
        """Activity samples, the newest `limit` in the range, oldest first: the whole
        fleet's in one read (the dashboard's charts), or one worker's."""
        return await asyncio.to_thread(history().samples, worker, since, until, limit)

    @app.get(
        "/api/stream",
        dependencies=reads,
        response_class=StreamingResponse,  # no JSON: the content is documented below
        responses={
            200: {"content": {"text/event-stream": {"itemSchema": STREAM_EVENT}}},
            503: {"description": "as many streams are open as HTTP_MAX_STREAMS allows"},
        },
    )
    async def stream() -> StreamingResponse:
        """Server-Sent Events: the fleet now (`fleet`), then every change as it happens."""
        if len(hub) >= settings.http_max_streams:
            raise HTTPException(
                503,
                f"{len(hub)} live streams are open, the most this monitor serves "
                "(HTTP_MAX_STREAMS); try again later",
                headers={"Retry-After": str(STREAM_RETRY_AFTER)},
            )

        async def feed() -> AsyncIterator[str]:
            with hub.subscribe() as queue:
                view = service.read(Registry.view)
                yield f"event: fleet\ndata: {view.model_dump_json()}\n\n"
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), KEEPALIVE)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if event is None:
                        if not hub.closed:  # else the server is stopping: just end
                            yield "event: dropped\ndata: {}\n\n"
                        return
                    yield f"event: {event.kind.value}\ndata: {event.model_dump_json()}\n\n"

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(feed(), media_type="text/event-stream", headers=headers)

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}})
    async def healthz() -> Response:
        writable = None if store is None else store.writable()
        health = Health(
            healthy=bus.connected and writable is not False,
            broker_connected=bus.connected,
            database_writable=writable,
        )
        return Response(
            health.model_dump_json(),
            status_code=200 if health.healthy else 503,
            media_type="application/json",
        )

    @app.get("/metrics", dependencies=reads, response_class=PlainTextResponse)
    async def prometheus() -> Response:
        body, content_type = metrics.render(metrics.snapshot(service))
        return Response(body, media_type=content_type)

    _serve_dashboard(app)
    return app


class _Revalidated(StaticFiles):
    """Static files a browser asks about again each time (an upgraded monitor's page is
    never mixed with an old cached script); unchanged files answer 304."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def _serve_dashboard(app: FastAPI) -> None:
    """The live dashboard at / and its assets under /static/ (see monitor/static/)."""
    app.mount("/static", _Revalidated(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def _answer(event: FleetEvent, command_id: UUID, awaiting: list[str]) -> AckReport | None:
    """The answer `event` gives to the command, if it is one from an awaited worker."""
    if event.command_id != command_id or event.worker_id not in awaiting:
        return None
    if event.kind is EventKind.ACKNOWLEDGED:
        outcome = Outcome(str(event.detail["outcome"]))
        return AckReport(worker_id=event.worker_id, outcome=outcome, latency_ms=event.latency_ms)
    if event.kind in (EventKind.EXPIRED, EventKind.UNROUTABLE):
        return AckReport(worker_id=event.worker_id, outcome=event.kind.value, latency_ms=None)
    return None


class _Server(uvicorn.Server):
    """uvicorn, looking once a second whether to stop rather than ten times: on a VM each
    wake-up of an idle process costs milliseconds of CPU, and its tick was about 2% of a
    core. Told to stop, it looks at once."""

    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        ticks = 0
        while not await self.on_tick(ticks):
            ticks += 10  # a second a tick: on_tick renews the Date header every 10th
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1.0)

    def stop(self) -> None:
        """From any thread."""
        self.should_exit = True
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop has ended already
                self._loop.call_soon_threadsafe(self._stop.set)


class ApiServer:
    """uvicorn serving the API on a thread of its own (it installs no signal handlers
    off the main thread; the process's own handlers stay in charge)."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.address = f"http://{host}:{port}"
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise SettingsError(f"cannot serve HTTP on {self.address} (HTTP_HOST/HTTP_PORT)")
            time.sleep(0.05)  # uvicorn offers no event to wait on

    def stop(self) -> None:
        self._server.stop()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def serving(service: MonitorService, host: str, port: int) -> Iterator[ApiServer]:
    """The API, for as long as the monitor runs."""
    metrics, hub = Metrics(), EventHub()
    service.listeners += [metrics.observe, hub.publish]
    server = ApiServer(create_app(service, metrics, hub), host, port)
    server.start()
    log.info("serving HTTP", extra=fields(address=server.address))
    try:
        yield server
    finally:
        hub.close()
        server.stop()
