"""`fireworks monitor | worker | up` run the system; `status | activate | deactivate |
watch | history` steer and watch it through the monitor's API."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

from bus.connection import Bus
from bus.definitions import DEFAULT_VHOST, definitions, load_passwords
from bus.errors import BusError, SettingsError
from bus.local_broker import LocalBroker
from bus.logs import configure, fields
from bus.settings import Settings, load_settings
from bus.tls import ssl_options_for
from bus.topology import Topology
from fireworks import control
from fireworks.control import ApiError, MonitorClient
from models.worker_model import FLEET, WorkerId
from workers.worker import WorkerService

if TYPE_CHECKING:
    from monitor.monitor import MonitorService

log = logging.getLogger("fireworks")
# How long a component may take to stop (goodbye, close) before it exits regardless,
# and how long `up` waits for its children before it kills them.
STOP_TIMEOUT = 5.0
CHILD_STOP_TIMEOUT = 2 * STOP_TIMEOUT


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fireworks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("monitor", help="run the monitor")
    commands.add_parser("worker", help="run one worker (WORKER_ID, else the hostname)")
    up = commands.add_parser("up", help="run a monitor and N workers as local processes")
    up.add_argument("--workers", type=int, default=3, metavar="N")
    up.add_argument(
        "--local-broker",
        action="store_true",
        help="start a private RabbitMQ node from a local rabbitmq-server first",
    )
    config = commands.add_parser(
        "config",
        help="show: the effective settings, secrets masked; broker-definitions: the "
        "broker's users, permissions and topology (JSON) with the passwords in .env",
    )
    config.add_argument("action", choices=["show", "broker-definitions"])
    config.add_argument("--vhost", default=DEFAULT_VHOST, help="for broker-definitions")
    commands.add_parser("status", help="the fleet as the monitor sees it")
    for name, verb in (("activate", "activate"), ("deactivate", "deactivate")):
        steer = commands.add_parser(name, help=f"{verb} workers and wait for their answers")
        which = steer.add_mutually_exclusive_group(required=True)
        which.add_argument("worker_ids", nargs="*", default=[], metavar="ID")
        which.add_argument("--all", action="store_true", help="the whole fleet")
        steer.add_argument(
            "--timeout",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help="how long to wait for the acknowledgements (default 10)",
        )
    commands.add_parser("watch", help="the fleet, then every change as it happens")
    past = commands.add_parser("history", help="a worker's activity and events")
    past.add_argument("worker_id", metavar="ID")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        if args.command in ("monitor", "worker"):
            return run_service(settings, args.command)
        if args.command == "up":
            return run_up(settings, args.workers, args.local_broker)
        if args.command == "config":
            return printing(lambda: show_config(settings, args.action, args.vhost))
        return printing(lambda: run_control(settings, args))
    except ApiError as error:
        print(f"fireworks: {error}", file=sys.stderr)
        return 1
    except SettingsError as error:
        print(f"fireworks: {error}", file=sys.stderr)
        return 2
    except BusError as error:
        print(f"fireworks: {error}", file=sys.stderr)
        return 1


def printing(command: Callable[[], int]) -> int:
    """Run a command that prints its answer; a reader that stops reading (`fireworks
    history w1 | head`) ends it quietly, as SIGPIPE ends other programs."""
    try:
        code = command()
        sys.stdout.flush()  # here, where a reader gone is caught, not at exit
        return code
    except BrokenPipeError:
        # What is left for standard output goes nowhere, so exiting writes nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE  # the shell's code for a program SIGPIPE ended


def show_config(settings: Settings, action: str, vhost: str) -> int:
    if action == "show":
        for name, value in settings.shown().items():
            print(f"{name}={value}")
        return 0
    passwords = load_passwords().by_user()
    document = definitions(Topology(settings.fireworks_namespace), passwords, vhost)
    print(json.dumps(document, indent=2))
    return 0


def run_control(settings: Settings, args: argparse.Namespace) -> int:
    token = settings.fireworks_api_token
    secret = None if token is None else token.get_secret_value()
    client = MonitorClient(settings.fireworks_api_url, secret)
    out = sys.stdout
    if args.command == "status":
        return control.status(client, out)
    if args.command in ("activate", "deactivate"):
        targets = [FLEET] if args.all else list(args.worker_ids)
        return control.steer(client, targets, args.command == "activate", args.timeout, out)
    if args.command == "watch":
        return control.watch(client, out)
    return control.history(client, args.worker_id, out)


def run_service(settings: Settings, kind: str) -> int:
    configure(settings.log_level, settings.log_format)
    bus, service = build(settings, kind)
    return serve(bus, service, kind)


def build(settings: Settings, kind: str) -> tuple[Bus, MonitorService | WorkerService]:
    """The bus and the service of one component, ready to serve."""
    topology = Topology(settings.fireworks_namespace)
    tls = ssl_options_for(settings)
    if kind == "worker":
        worker_id = _worker_id(settings)
        bus = Bus(
            settings.broker_urls(),
            topology,
            f"fireworks-worker-{worker_id}",
            settings.rabbitmq_heartbeat,
            ssl_options_for=tls,
        )
        return bus, WorkerService(settings, worker_id, bus)
    bus = Bus(
        settings.broker_urls(),
        topology,
        "fireworks-monitor",
        settings.rabbitmq_heartbeat,
        ssl_options_for=tls,
    )
    # Only the monitor loads its own stack (SQLite here, FastAPI and uvicorn in
    # serve): a worker process stays as small as its job.
    from monitor.monitor import MonitorService
    from monitor.store import HistoryStore

    store = None
    if settings.fireworks_db is not None:
        store = HistoryStore(settings.fireworks_db, settings.history_retention)
    return bus, MonitorService(settings, bus, store)


def serve(bus: Bus, service: MonitorService | WorkerService, kind: str) -> int:
    """Run until SIGTERM/SIGINT; a stop that cannot finish in time (a broker that stopped
    answering, a publisher blocked by a resource alarm) ends the process anyway."""

    def give_up(signum: int, frame: FrameType | None) -> None:
        log.error("could not stop cleanly in time; exiting", extra=fields(seconds=STOP_TIMEOUT))
        logging.shutdown()
        os._exit(1)

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("stopping", extra=fields(signal=signal.Signals(signum).name))
        bus.stop()
        signal.signal(signal.SIGALRM, give_up)
        signal.setitimer(signal.ITIMER_REAL, STOP_TIMEOUT)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("starting", extra=fields(component=kind, broker=bus.address()))
    with contextlib.ExitStack() as running:
        if not isinstance(service, WorkerService):
            running.enter_context(_monitor_running(service))
        bus.run(service)
    return 0


@contextlib.contextmanager
def _monitor_running(service: MonitorService) -> Iterator[None]:
    """The monitor's history writer and HTTP API, for as long as it runs."""
    from monitor.api import serving

    with contextlib.ExitStack() as running:
        if service.store is not None:
            service.store.start()
            running.callback(service.store.close)
        if service.settings.http_port:
            running.enter_context(
                serving(service, service.settings.http_host, service.settings.http_port)
            )
        yield


_WORKER_ID: TypeAdapter[str] = TypeAdapter(WorkerId)


def _worker_id(settings: Settings) -> str:
    candidate = settings.resolved_worker_id()
    try:
        return _WORKER_ID.validate_python(candidate)
    except ValidationError as error:
        problem = error.errors(include_url=False, include_input=False)[0]["msg"]
        raise SettingsError(f"invalid setting WORKER_ID ({candidate!r}): {problem}") from None


def run_up(settings: Settings, workers: int, local_broker: bool) -> int:
    """The whole system as local processes; Ctrl-C stops all of it. A worker that exits
    leaves the rest running, as a worker's crash does anywhere: the monitor marks it
    lost. Without the monitor there is no system, so its exit stops everything."""
    if workers < 0:
        raise SettingsError("invalid option --workers: must be 0 or more")
    configure(settings.log_level, settings.log_format)
    broker = LocalBroker() if local_broker else None
    env = dict(os.environ)
    if broker is not None:
        log.info("starting a private RabbitMQ node", extra=fields(home=broker.home))
        env["RABBITMQ_URL"] = broker.start()
    children: list[subprocess.Popen[bytes]] = []
    interrupted = False

    def interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = True

    def spawn(name: str, kind: str, **extra: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen([sys.executable, "-m", "fireworks", kind], env={**env, **extra})
        children.append(child)
        log.info("started", extra=fields(process=name, pid=child.pid))
        return child

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        monitor = spawn("monitor", "monitor")
        names = [f"worker-{number}" for number in range(1, workers + 1)]
        running = {name: spawn(name, "worker", WORKER_ID=name) for name in names}
        while not interrupted and monitor.poll() is None:
            for name, child in list(running.items()):
                if child.poll() is not None:
                    del running[name]
                    log.warning("exited", extra=fields(process=name, code=child.returncode))
            time.sleep(0.2)  # the children do the work; this only watches them
    finally:
        _stop_children(children)
        if broker is not None:
            broker.close()
    if interrupted:
        return 0
    log.error("the monitor exited; stopped everything", extra=fields(code=monitor.returncode))
    return 1


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_TIMEOUT
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
