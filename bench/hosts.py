"""A process hosting many workers, each with its own connection and thread, steered by
the bench over stdin: `start N FIRST` starts N more (ids FIRST…), `stop` ends them all.

Kinds:
  fireworks  the real `fireworks worker` (bus + WorkerService, built by fireworks.cli.build)
  raw        bare pika consumers: each owns a queue bound to the run's fanout exchange and
             answers every message on the message's reply_to (the floor of a worker)
  topology   bare pika consumers on Fireworks' topology: each declares and binds its queue
             as worker w<N> does (bus.topology) and answers every message on the status
             exchange, with that worker's status routing key
  storm      bare pika: connect, open one channel, publish one message, stay connected
  steps      bare pika taking a worker's broker steps, then publishing one message: three
             channels, its own queue with its two bindings (bus.topology), consuming it

Usage: python -m bench.hosts KIND URL NAMESPACE LOGFILE
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika

from bench.common import log_to, say
from bus.settings import Settings
from bus.topology import Topology
from fireworks.cli import build


def fanout_exchange(namespace: str) -> str:
    return f"{namespace}.fanout"


def raw_queue(namespace: str, number: int) -> str:
    return f"{namespace}.raw.{number}"


def storm_queue(namespace: str) -> str:
    return f"{namespace}.storm"


class RawConnection:
    """One bare pika connection on its own thread, woken only by I/O or by stop()."""

    def __init__(self, url: str, setup: Callable[[Any, Any], None]) -> None:
        self.ready = threading.Event()
        self._url = url
        self._setup = setup
        self._stopping = False
        self._connection: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self._connection = pika.BlockingConnection(pika.URLParameters(self._url))
        self._setup(self._connection, self._connection.channel())
        self.ready.set()
        while not self._stopping:
            self._connection.process_data_events(time_limit=None)
        self._connection.close()

    def stop(self) -> None:
        def flag() -> None:
            self._stopping = True

        if self._connection is not None:
            self._connection.add_callback_threadsafe(flag)


def _answer_each(channel: Any, queue: str, send: Callable[[Any, Any, bytes], None]) -> None:
    """Consume `queue` (prefetch 200): `send(channel, properties, body)` answers each
    message, which is acked after."""

    def answer(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        send(ch, properties, body)
        ch.basic_ack(method.delivery_tag)

    channel.basic_qos(prefetch_count=200)
    channel.basic_consume(queue, on_message_callback=answer)


def raw_consumer(namespace: str, number: int) -> Callable[[Any, Any], None]:
    def setup(connection: Any, channel: Any) -> None:
        queue = raw_queue(namespace, number)
        channel.queue_declare(queue, auto_delete=True)
        channel.queue_bind(queue, fanout_exchange(namespace))

        def send(ch: Any, properties: Any, body: bytes) -> None:
            reply = pika.BasicProperties(correlation_id=properties.correlation_id)
            ch.basic_publish("", properties.reply_to, body, reply)

        _answer_each(channel, queue, send)

    return setup


def topology_consumer(namespace: str, number: int) -> Callable[[Any, Any], None]:
    def setup(connection: Any, channel: Any) -> None:
        topology, worker_id = Topology(namespace), f"w{number}"
        queue = topology.declare_worker(channel, worker_id)
        key = topology.status_key(worker_id)

        def send(ch: Any, properties: Any, body: bytes) -> None:
            reply = pika.BasicProperties(correlation_id=properties.correlation_id, delivery_mode=1)
            ch.basic_publish(topology.status_exchange, key, body, reply)

        _answer_each(channel, queue, send)

    return setup


def storm_publisher(namespace: str, number: int) -> Callable[[Any, Any], None]:
    def setup(connection: Any, channel: Any) -> None:
        channel.basic_publish("", storm_queue(namespace), str(number).encode())

    return setup


def steps_publisher(namespace: str, number: int) -> Callable[[Any, Any], None]:
    """The broker steps `fireworks worker` takes on connecting, in bare pika and in the
    same order (the bench declares the shared topology first)."""

    def setup(connection: Any, channel: Any) -> None:
        command = connection.channel()
        connection.channel()  # the status channel: opened, not used until a report
        queue = Topology(namespace).declare_worker(channel, f"s{number}")
        command.basic_qos(prefetch_count=200)
        command.basic_consume(queue, on_message_callback=lambda *delivery: None)
        # Persistent, to a durable queue, as a worker's registration is.
        persistent = pika.BasicProperties(delivery_mode=2)
        channel.basic_publish("", storm_queue(namespace), str(number).encode(), persistent)

    return setup


RAW_KINDS = {
    "raw": raw_consumer,
    "topology": topology_consumer,
    "storm": storm_publisher,
    "steps": steps_publisher,
}


def main(argv: list[str]) -> int:
    kind, url, namespace, logfile = argv
    log_to(Path(logfile))
    stoppers: list[Callable[[], None]] = []
    threads: list[threading.Thread] = []
    # Read once per process, as a worker reads its settings once when it starts: the
    # storm measures workers coming online, not processes starting (for neither side).
    settings = Settings(_env_file=None, rabbitmq_url=url, fireworks_namespace=namespace)
    say("hello")
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["stop"]:
            break
        count, first = int(words[1]), int(words[2])
        ready: list[threading.Event] = []
        for number in range(first, first + count):
            if kind == "fireworks":
                worker = settings.model_copy(update={"worker_id": f"w{number}"})
                bus, service = build(worker, "worker")
                thread = threading.Thread(target=bus.run, args=(service,), daemon=True)
                thread.start()
                stoppers.append(bus.stop)
                threads.append(thread)
            else:
                raw = RawConnection(url, RAW_KINDS[kind](namespace, number))
                stoppers.append(raw.stop)
                threads.append(raw.thread)
                ready.append(raw.ready)
        for event in ready:  # fireworks workers are waited for at the monitor instead
            event.wait(timeout=60)
        say("started", len(threads))
    for stop in stoppers:
        stop()
    for thread in threads:
        thread.join(timeout=10)
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
