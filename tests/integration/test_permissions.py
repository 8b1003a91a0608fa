"""The broker's least-privilege users, against a real RabbitMQ node that loads the same
committed definitions as the compose broker (deploy/rabbitmq), with the passwords
from the committed `.env`. Every boundary is checked both ways: what a user may do
works, what it may not is refused by the broker (403 ACCESS_REFUSED)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from harness import MonitorThread, WorkerProcess, make_settings, wait_for

from bus.definitions import ADMIN, DEFAULT_VHOST, MONITOR, WORKER, Passwords
from bus.local_broker import LocalBroker, find_server
from bus.topology import Topology

REPO = Path(__file__).resolve().parents[2]
DEFINITIONS = REPO / "deploy" / "rabbitmq" / "definitions.json"
ACCESS_REFUSED = 403
TOPOLOGY = Topology("fireworks")  # the namespace the definitions are written for

Action = Callable[[Any], object]


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalBroker]:
    if find_server() is None:
        pytest.skip("needs a local rabbitmq-server installation")
    with LocalBroker(definitions=DEFINITIONS) as node:
        yield node


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    return Passwords(_env_file=REPO / ".env").by_user()


def url(broker: LocalBroker, user: str, password: str) -> str:
    return f"amqp://{user}:{password}@127.0.0.1:{broker.port}/{DEFAULT_VHOST}"


@pytest.fixture(scope="module")
def as_worker(broker: LocalBroker, passwords: dict[str, str]) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(url(broker, WORKER, passwords[WORKER])))
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def as_monitor(broker: LocalBroker, passwords: dict[str, str]) -> Iterator[Any]:
    connection = pika.BlockingConnection(
        pika.URLParameters(url(broker, MONITOR, passwords[MONITOR]))
    )
    yield connection
    connection.close()


def attempt(connection: Any, action: Action) -> int | None:
    """Run `action` on a fresh confirming channel: None if the broker allowed it, else
    the reply code it closed the channel with. The synchronous qos after the action makes
    a refusal of an unconfirmed operation (a bind, a consume) surface here."""
    channel = connection.channel()
    channel.confirm_delivery()
    try:
        action(channel)
        channel.basic_qos(prefetch_count=1)
    except pika.exceptions.ChannelClosedByBroker as error:
        return int(error.reply_code)
    channel.close()
    return None


def publish(exchange: str, key: str) -> Action:
    return lambda ch: ch.basic_publish(exchange, key, b"{}", mandatory=False)


def login(broker: LocalBroker, user: str, password: str) -> str | None:
    """None if the broker accepts the login, else why not."""
    try:
        params = pika.URLParameters(url(broker, user, password))
        params.connection_attempts = 1
        pika.BlockingConnection(params).close()
    except pika.exceptions.AMQPConnectionError as error:
        return repr(error)
    return None


# -- logins ------------------------------------------------------------------------


def test_there_is_no_guest_and_passwords_are_checked(
    broker: LocalBroker, passwords: dict[str, str]
) -> None:
    for user in (ADMIN, MONITOR, WORKER):
        assert login(broker, user, passwords[user]) is None
    guest = login(broker, "guest", "guest")
    assert guest is not None and "ACCESS_REFUSED" in guest
    wrong = login(broker, WORKER, passwords[MONITOR])
    assert wrong is not None and "ACCESS_REFUSED" in wrong
    # The vhost is the deployment's own: the default one is not open to its users.
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(
            pika.URLParameters(f"amqp://{WORKER}:{passwords[WORKER]}@127.0.0.1:{broker.port}/%2F")
        )


# -- the worker user ----------------------------------------------------------------

WORKER_ALLOWED: dict[str, Action] = {
    "declare its command queue": lambda ch: TOPOLOGY.declare_worker(ch, "w1"),
    "consume its command queue": lambda ch: (
        TOPOLOGY.declare_worker(ch, "w1"),
        ch.basic_consume(TOPOLOGY.worker_queue("w1"), lambda *_: None),
    ),
    "publish a registration": publish(TOPOLOGY.register_exchange, "register.w1"),
    "publish a goodbye": publish(TOPOLOGY.register_exchange, "goodbye.w1"),
    "publish a status": publish(TOPOLOGY.status_exchange, "status.w1"),
    "dead-letter a message": publish(TOPOLOGY.dead_exchange, ""),
}

WORKER_REFUSED: dict[str, Action] = {
    "publish a command": publish(TOPOLOGY.command_exchange, "cmd.w1"),
    "publish a fleet command": publish(TOPOLOGY.command_exchange, "cmd.all"),
    "publish the monitor's echo": publish(TOPOLOGY.status_exchange, "echo"),
    "publish a status under another key": publish(TOPOLOGY.status_exchange, "register.w1"),
    "publish a registration under a wildcard": publish(TOPOLOGY.register_exchange, "register.#"),
    "publish straight to the monitor's queue": publish("", TOPOLOGY.status_queue),
    "publish to amq.topic": publish("amq.topic", "cmd.w1"),
    "consume the monitor's status queue": lambda ch: ch.basic_consume(
        TOPOLOGY.status_queue, lambda *_: None
    ),
    "consume the monitor's register queue": lambda ch: ch.basic_consume(
        TOPOLOGY.register_queue, lambda *_: None
    ),
    "read the dead letters": lambda ch: ch.basic_get(TOPOLOGY.dead_queue),
    "purge the monitor's status queue": lambda ch: ch.queue_purge(TOPOLOGY.status_queue),
    "delete the monitor's register queue": lambda ch: ch.queue_delete(TOPOLOGY.register_queue),
    "declare the shared topology": TOPOLOGY.declare_shared,
    # (Permissions match names, not kinds: under a worker queue's name it could.)
    "declare a new exchange": lambda ch: ch.exchange_declare("fireworks.mine", "fanout"),
    "delete the command exchange": lambda ch: ch.exchange_delete(TOPOLOGY.command_exchange),
    "declare a queue outside the worker queues": lambda ch: ch.queue_declare("fireworks.mine"),
    "bind its queue to every command": lambda ch: (
        TOPOLOGY.declare_worker(ch, "w1"),
        ch.queue_bind(TOPOLOGY.worker_queue("w1"), TOPOLOGY.command_exchange, "cmd.#"),
    ),
    "bind its queue to the statuses": lambda ch: (
        TOPOLOGY.declare_worker(ch, "w1"),
        ch.queue_bind(TOPOLOGY.worker_queue("w1"), TOPOLOGY.status_exchange, "status.#"),
    ),
}


@pytest.mark.parametrize("name", WORKER_ALLOWED)
def test_worker_user_may(as_worker: Any, name: str) -> None:
    assert attempt(as_worker, WORKER_ALLOWED[name]) is None


@pytest.mark.parametrize("name", WORKER_REFUSED)
def test_worker_user_may_not(as_worker: Any, name: str) -> None:
    assert attempt(as_worker, WORKER_REFUSED[name]) == ACCESS_REFUSED


# -- the monitor user ----------------------------------------------------------------

MONITOR_ALLOWED: dict[str, Action] = {
    "declare the shared topology": TOPOLOGY.declare_shared,
    "consume its status queue": lambda ch: ch.basic_consume(TOPOLOGY.status_queue, print),
    "consume its register queue": lambda ch: ch.basic_consume(TOPOLOGY.register_queue, print),
    "read the dead letters": lambda ch: ch.basic_get(TOPOLOGY.dead_queue),
    "count the dead letters": lambda ch: ch.queue_declare(TOPOLOGY.dead_queue, passive=True),
    "publish a command": publish(TOPOLOGY.command_exchange, "cmd.w1"),
    "publish a fleet command": publish(TOPOLOGY.command_exchange, "cmd.all"),
    "publish its echo": publish(TOPOLOGY.status_exchange, "echo"),
    "dead-letter a message": publish(TOPOLOGY.dead_exchange, ""),
}

MONITOR_REFUSED: dict[str, Action] = {
    "publish a registration": publish(TOPOLOGY.register_exchange, "register.w1"),
    "publish a worker's status": publish(TOPOLOGY.status_exchange, "status.w1"),
    "publish a command under a wildcard": publish(TOPOLOGY.command_exchange, "cmd.#"),
    "declare a worker queue": lambda ch: TOPOLOGY.declare_worker(ch, "w2"),
    "consume a worker queue": lambda ch: ch.basic_consume(TOPOLOGY.worker_queue("w1"), print),
    "delete a worker queue": lambda ch: ch.queue_delete(TOPOLOGY.worker_queue("w1")),
    "declare an exchange outside the topology": lambda ch: ch.exchange_declare("fireworks.x"),
}


@pytest.mark.parametrize("name", MONITOR_ALLOWED)
def test_monitor_user_may(as_monitor: Any, name: str) -> None:
    assert attempt(as_monitor, MONITOR_ALLOWED[name]) is None


@pytest.mark.parametrize("name", MONITOR_REFUSED)
def test_monitor_user_may_not(as_monitor: Any, as_worker: Any, name: str) -> None:
    attempt(as_worker, WORKER_ALLOWED["declare its command queue"])  # w1's queue exists
    assert attempt(as_monitor, MONITOR_REFUSED[name]) == ACCESS_REFUSED


# -- the system under its own users -----------------------------------------------------


def test_fleet_runs_with_the_least_privilege_users(
    broker: LocalBroker, passwords: dict[str, str], tmp_path: Path
) -> None:
    """A real monitor and a real worker process, each with its own user: the worker
    uses the topology without declaring it, registers, and obeys a command."""
    monitor = MonitorThread(
        make_settings(url(broker, MONITOR, passwords[MONITOR]), TOPOLOGY.namespace)
    )
    worker = WorkerProcess(
        make_settings(url(broker, WORKER, passwords[WORKER]), TOPOLOGY.namespace),
        "fw-1",
        tmp_path,
    )
    try:
        wait_for(lambda: monitor.liveness("fw-1") == "online", 20, "the worker to register")
        monitor.command("fw-1", True)
        wait_for(lambda: monitor.observed_active("fw-1") is True, 10, "the worker to activate")
        assert "ACCESS_REFUSED" not in worker.log()
    finally:
        worker.terminate()
        monitor.stop()
