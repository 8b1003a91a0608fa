"""One pika BlockingConnection with three channels, kept alive by a reconnect loop.

Everything here runs on the thread that calls `Bus.run`; other threads hand work
over with `call_threadsafe`. Timers belong to the bus, not to a connection, so
periodic work goes on while the broker is away.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException
from pydantic import BaseModel

from bus.backoff import Backoff
from bus.codec import CONTENT_TYPE, encode
from bus.errors import BusError, InUse, InvalidMessage, NotConnected
from bus.logs import fields
from bus.sending import send_at_once
from bus.settings import mask_urls
from bus.tls import SslOptionsFor
from bus.topology import Topology

log = logging.getLogger("fireworks.bus")

ChannelName = Literal["register", "command", "status"]
CHANNELS: tuple[ChannelName, ...] = ("register", "command", "status")
# Longest the loop blocks in pika with no timer due: a safety net only, as stop() and
# handed-over jobs wake it at once. Every wake-up costs CPU (~0.1-0.4 ms on a small VM),
# which a host running hundreds of workers pays hundreds of times over.
MAX_BLOCK = 5.0
# A broker that holds a publisher blocked (resource alarm) longer than this is given up on.
BLOCKED_TIMEOUT = 30.0
# Only a session that lasted this long resets the backoff: a broker that accepts and
# then drops every connection is not hammered.
HEALTHY_SESSION = 10.0
# What pika raises: its AMQP errors, the socket's, and what opening a connection raises
# as it is when no attempt got through the handshake in time (AMQPConnectorStackTimeout,
# a broker that takes the connection and never answers), which is neither.
PIKA_ERRORS = (pika.exceptions.AMQPError, OSError, AMQPConnectorException)
NOT_FOUND = 404
ACCESS_REFUSED = 403


@dataclass(frozen=True)
class Delivery:
    body: bytes
    exchange: str
    routing_key: str
    content_type: str | None


Handler = Callable[[Delivery], None]


class Service(Protocol):
    """A component the bus drives: told when a session starts, ends and is about to stop."""

    def on_connected(self, bus: Bus) -> None: ...

    def on_disconnected(self) -> None: ...

    def on_stopping(self, bus: Bus) -> None: ...


def expiration_ms(seconds: float) -> str:
    """A per-message TTL as AMQP's `expiration` property wants it: whole milliseconds,
    as text, at least 1 (0 would expire it at once)."""
    return str(max(1, int(seconds * 1000)))


def _reason(error: BaseException) -> str:
    cause = _cause(error)  # `AMQPConnectionError: ConnectionRefusedError: [Errno 111] …`
    said = str(error) if cause is None else _reason(cause)
    return f"{type(error).__name__}: {said}".strip().rstrip(":")[:300]


def _cause(error: BaseException) -> BaseException | None:
    """What a pika error that says nothing itself wraps, if anything: a failed connect is an
    AMQPConnectionError holding a connector error holding (as `.exception`) the OSError."""
    if str(error):
        return None
    nested = getattr(error, "exception", None)
    if isinstance(nested, BaseException):
        return nested
    return next((arg for arg in error.args if isinstance(arg, BaseException)), None)


class Bus:
    def __init__(
        self,
        urls: list[str],
        topology: Topology,
        name: str,
        heartbeat: int = 10,
        backoff: Backoff | None = None,
        ssl_options_for: SslOptionsFor | None = None,
    ) -> None:
        self.topology = topology
        self.name = name
        self._urls = urls
        # Options for amqps URLs; without them pika's own (the system's trust store) stay.
        self._ssl_options_for = ssl_options_for
        self._heartbeat = heartbeat
        self._backoff = backoff or Backoff()
        self._connection: Any = None
        self._channels: dict[ChannelName, Any] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._inbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = False
        self.connects = 0
        # (queue, "valid" | "invalid") -> messages received; read from other threads.
        self._received: Counter[tuple[str, str]] = Counter()
        self._received_lock = threading.Lock()
        # id(channel) -> (channel, the last delivery tag handled and not yet acked)
        self._handled: dict[int, tuple[Any, int]] = {}

    # -- what services call -------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.is_open

    def address(self) -> str:
        return mask_urls(self._urls)

    def every(self, interval: float, job: Callable[[], None]) -> None:
        """Run `job` every `interval` seconds on the bus thread, connected or not."""

        def repeat() -> None:
            self.call_later(interval, repeat)
            job()

        self.call_later(interval, repeat)

    def call_later(self, delay: float, job: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._sequence), job))

    def call_threadsafe(self, job: Callable[[], None]) -> None:
        """Hand `job` to the bus thread from any thread."""
        self._inbox.put(job)
        self._nudge()

    def stop(self) -> None:
        """Ask the loop to finish; safe from signal handlers and other threads."""
        self._stopping = True
        self._nudge()

    def counts(self) -> dict[tuple[str, str], int]:
        """Messages received so far, by (queue, "valid" | "invalid")."""
        with self._received_lock:
            return dict(self._received)

    def declare(
        self,
        declaration: Callable[[Any], object],
        missing: Callable[[Any], object] | None = None,
    ) -> None:
        """Run a topology declaration (see bus.topology) on the register channel. If the
        broker finds something it needs missing (404), `missing` declares that and the
        declaration runs again: a user that may not declare that part works wherever it
        exists, and one that may, creates it. No round trips are spent looking first."""
        try:
            declaration(self._channel("register"))
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code != NOT_FOUND or missing is None:
                raise BusError(_reason(error)) from None
            log.info("declaring the missing topology", extra=fields(reason=_reason(error)))
            self._guard(self._reopen_register)
            self._guard(lambda: missing(self._channel("register")))
            self._guard(lambda: declaration(self._channel("register")))
        except PIKA_ERRORS as error:
            raise BusError(_reason(error)) from None

    def queue_depth(self, queue_name: str) -> int:
        """Messages ready in `queue_name`, as the broker counts them (a passive declare on
        the register channel). If the broker refuses it, it closes that channel and the
        consumer on it with it: the session ends, and the next one sets everything up."""
        try:
            declared = self._channel("register").queue_declare(queue_name, passive=True)
        except pika.exceptions.ChannelClosedByBroker as error:
            log.warning("queue not counted; reconnecting", extra=fields(reason=_reason(error)))
            self._guard(self._connection.close)
            raise BusError(_reason(error)) from None
        except PIKA_ERRORS as error:
            raise BusError(_reason(error)) from None
        return int(declared.method.message_count)

    def _reopen_register(self) -> None:
        # The broker closes a channel on any error; this one is only used for declaring
        # and publishing, so a new one takes its place at once.
        self._channels["register"] = self._connection.channel()

    def consume(self, channel: ChannelName, queue_name: str, handler: Handler) -> None:
        """Deliver messages from `queue_name` to `handler`, acked after it returns (one ack
        per round of deliveries). A handler raises InvalidMessage to have the message
        dead-lettered instead."""
        ch = self._channel(channel)

        def deliver(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            delivery = Delivery(body, method.exchange, method.routing_key, properties.content_type)
            try:
                handler(delivery)
                self._count(queue_name, "valid")
            except InvalidMessage as error:
                self._dead_letter(ch, queue_name, delivery, error.reason)
            except BusError:
                raise  # not acked: redelivered after the reconnect
            except Exception as error:  # a bug must not become a requeue loop
                log.exception("handler failed", extra=fields(queue=queue_name))
                self._dead_letter(ch, queue_name, delivery, f"handler error: {_reason(error)}")
            self._handled[id(ch)] = (ch, method.delivery_tag)

        def start() -> None:
            ch.basic_qos(prefetch_count=200)
            # Exclusive: each queue a process consumes is its own alone. A second worker
            # with the same id, or a second monitor on the namespace, is refused here (and
            # retries) instead of silently taking a share of the messages.
            try:
                ch.basic_consume(queue_name, on_message_callback=deliver, exclusive=True)
            except pika.exceptions.ChannelClosedByBroker as error:
                if error.reply_code != ACCESS_REFUSED or "exclusive use" not in error.reply_text:
                    raise
                raise InUse(
                    f"{queue_name} is consumed by another process: another worker with this "
                    "WORKER_ID, or another monitor on this FIREWORKS_NAMESPACE?"
                ) from None

        self._guard(start)

    def on_returned(self, channel: ChannelName, handler: Handler) -> None:
        """Hand every `mandatory` message published on `channel` that no queue took
        (basic.return, asynchronous) to `handler` on the bus thread."""
        ch = self._channel(channel)

        def returned(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            delivery = Delivery(body, method.exchange, method.routing_key, properties.content_type)
            try:
                handler(delivery)
            except BusError:
                raise
            except Exception:  # a bug must not end the session
                log.exception("return handler failed", extra=fields(channel=channel))

        ch.add_on_return_callback(returned)

    def publish(
        self,
        channel: ChannelName,
        exchange: str,
        routing_key: str,
        message: BaseModel,
        *,
        persistent: bool = True,
        mandatory: bool = False,
        expiration: float | None = None,
    ) -> None:
        """Publish `message` as JSON. A `mandatory` one no queue takes comes back to the
        channel's `on_returned` handler. Nothing waits for the broker (publisher confirms
        held the bus thread for a round trip, and for a fan-out's whole routing): a sender
        that must not lose a message keeps it until answered, as the monitor does."""
        properties = pika.BasicProperties(
            content_type=CONTENT_TYPE,
            message_id=str(getattr(message, "message_id", "")) or None,
            type=str(getattr(message, "kind", "")) or None,
            delivery_mode=2 if persistent else 1,
            expiration=None if expiration is None else expiration_ms(expiration),
        )
        ch = self._channel(channel)
        try:
            ch.basic_publish(exchange, routing_key, encode(message), properties, mandatory)
        except PIKA_ERRORS as error:
            raise BusError(_reason(error)) from None

    # -- the loop -----------------------------------------------------------------

    def run(self, service: Service) -> None:
        """Connect, serve, and reconnect with backoff, until stop()."""
        while not self._stopping:
            connected_at = None
            try:
                self._open()
                log.info("connected", extra=fields(broker=self.address(), session=self.connects))
                service.on_connected(self)
                connected_at = time.monotonic()
                self._serve()
                service.on_stopping(self)
            except InUse as error:
                log.error("queue in use", extra=fields(reason=str(error)))
            except BusError as error:
                if not self._stopping:
                    log.warning(
                        "broker unavailable",
                        extra=fields(broker=self.address(), reason=str(error)),
                    )
            finally:
                if self._connection is not None:
                    self._close()
                    if not self._stopping:
                        service.on_disconnected()
            if not self._stopping:
                if connected_at is not None and time.monotonic() - connected_at > HEALTHY_SESSION:
                    self._backoff.reset()
                delay = self._backoff.next_delay()
                log.info("reconnecting", extra=fields(in_seconds=round(delay, 2)))
                self._idle(delay)
        log.info("stopped")

    def _open(self) -> None:
        parameters = []
        for url in self._urls:
            params = pika.URLParameters(url)
            if params.ssl_options is not None and self._ssl_options_for is not None:
                params.ssl_options = self._ssl_options_for(params.host)
            params.heartbeat = self._heartbeat
            params.blocked_connection_timeout = BLOCKED_TIMEOUT
            params.connection_attempts = 1
            params.socket_timeout = 5
            params.stack_timeout = 10
            params.client_properties = {"connection_name": self.name}
            parameters.append(params)
        try:
            self._connection = pika.BlockingConnection(parameters)
            send_at_once(self._connection)
            self.connects += 1
            self._connection.add_on_connection_blocked_callback(
                lambda *_: log.warning("broker blocked publishing (resource alarm)")
            )
            self._connection.add_on_connection_unblocked_callback(
                lambda *_: log.info("broker unblocked publishing")
            )
            self._channels = {name: self._connection.channel() for name in CHANNELS}
        except PIKA_ERRORS as error:
            raise BusError(_reason(error)) from None

    def _serve(self) -> None:
        self._run_due()  # jobs handed over while connecting found no connection to wake
        while not self._stopping:
            # A job (a publish) may have found the connection broken; pika refuses to
            # run a closed connection's loop, so notice it here.
            if not self._connection.is_open:
                raise BusError("connection lost")
            self._guard(lambda: self._connection.process_data_events(time_limit=self._block_for()))
            self._guard(self._ack_handled)
            self._run_due()

    def _ack_handled(self) -> None:
        """One ack per channel for every message handled in the last round of deliveries
        (`multiple`): per-message acks were most of the cost of taking in statuses."""
        handled, self._handled = self._handled, {}
        for ch, tag in handled.values():
            ch.basic_ack(tag, multiple=True)

    def _idle(self, seconds: float) -> None:
        """Wait out a reconnect delay while still running timers and handed-over work."""
        deadline = time.monotonic() + seconds
        while not self._stopping and (now := time.monotonic()) < deadline:
            self._wake.wait(min(deadline - now, self._block_for()))
            self._wake.clear()
            self._run_due()

    def _close(self) -> None:
        connection, self._connection, self._channels = self._connection, None, {}
        self._handled = {}  # unacked on a closed channel: the broker redelivers them
        try:
            if connection.is_open:
                connection.close()
        except PIKA_ERRORS:
            pass  # it is going away either way

    # -- helpers --------------------------------------------------------------------

    def _block_for(self) -> float:
        if not self._timers:
            return MAX_BLOCK
        return min(MAX_BLOCK, max(0.0, self._timers[0][0] - time.monotonic()))

    def _run_due(self) -> None:
        while not self._inbox.empty():
            self._run(self._inbox.get_nowait())
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, job = heapq.heappop(self._timers)
            self._run(job)

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except BusError as error:
            # The connection is broken; the loop notices on its next pika call.
            log.debug("job could not reach the broker", extra=fields(reason=str(error)))
        except Exception:
            log.exception("job failed")

    def _nudge(self) -> None:
        self._wake.set()
        connection = self._connection
        if connection is not None:
            # If it is closing, pika ends the loop's wait by itself.
            with contextlib.suppress(*PIKA_ERRORS):
                connection.add_callback_threadsafe(lambda: None)

    def _channel(self, name: ChannelName) -> Any:
        channel = self._channels.get(name)
        if channel is None or not channel.is_open:
            raise NotConnected(f"no open {name} channel")
        return channel

    def _guard(self, call: Callable[[], object]) -> None:
        try:
            call()
        except PIKA_ERRORS as error:
            raise BusError(_reason(error)) from None

    def _count(self, queue_name: str, result: str) -> None:
        with self._received_lock:
            self._received[(queue_name, result)] += 1

    def _dead_letter(self, ch: Any, queue_name: str, delivery: Delivery, reason: str) -> None:
        self._count(queue_name, "invalid")
        log.warning(
            "dead-lettered",
            extra=fields(queue=queue_name, routing_key=delivery.routing_key, reason=reason),
        )
        headers = {
            "x-fireworks-reason": reason[:1000],
            "x-fireworks-queue": queue_name,
            "x-original-exchange": delivery.exchange,
            "x-original-routing-key": delivery.routing_key,
        }
        properties = pika.BasicProperties(content_type=delivery.content_type, headers=headers)
        ch.basic_publish(self.topology.dead_exchange, "", delivery.body, properties)
