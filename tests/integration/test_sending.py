"""A message in one send() (bus.sending), on a real broker: whole, in order, and also
when the socket takes only part of it; pika's own sending elsewhere."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from bus.sending import send_at_once


class CountingSocket:
    """The connection's socket, counting the send() calls made on it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends = 0

    def send(self, data: bytes) -> int:
        self.sends += 1
        return self.sock.send(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


@pytest.fixture
def connection(broker_url: str) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        yield connection
    finally:
        if connection.is_open:
            connection.close()


def counting(connection: Any) -> CountingSocket:
    transport = connection._impl._transport
    transport._sock = CountingSocket(transport._sock)
    assert send_at_once(connection)
    return transport._sock  # type: ignore[no-any-return]


def a_queue(connection: Any) -> tuple[Any, str]:
    channel = connection.channel()
    return channel, channel.queue_declare("", exclusive=True).method.queue


def read_back(channel: Any, queue: str, count: int) -> list[bytes]:
    read: list[bytes] = []
    for method, _properties, body in channel.consume(queue, auto_ack=True, inactivity_timeout=10):
        assert method is not None, f"only {len(read)} of {count} messages arrived"
        read.append(body)
        if len(read) == count:
            break
    return read


def test_each_message_goes_out_in_one_send_and_arrives_whole_in_order(connection: Any) -> None:
    sock = counting(connection)
    channel, queue = a_queue(connection)
    bodies = [f"message {i}".encode() * (i + 1) for i in range(100)]
    before = sock.sends
    for body in bodies:
        channel.basic_publish("", queue, body, pika.BasicProperties(content_type="x/y"))
    # Method, header and body frames: a send() each with pika's own sending.
    assert sock.sends - before == len(bodies)
    assert read_back(channel, queue, len(bodies)) == bodies


def test_what_the_socket_does_not_take_at_once_goes_through_pikas_loop_in_order(
    connection: Any,
) -> None:
    sock = counting(connection)
    # A small send buffer: a large message is taken only in part and the rest is queued
    # for pika's loop; messages published after it, with nothing run in between (the
    # channel's own publish, which does not wait for the loop), queue behind it.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    large = bytes(range(256)) * 4096  # 1 MB: many body frames, one joined write
    bodies = [b"before", large, b"after", large[::-1], b"last"]
    channel, queue = a_queue(connection)
    queued = []
    for body in bodies:
        channel._impl.basic_publish("", queue, body)
        queued.append(connection._impl._transport.get_write_buffer_size())
    assert queued[0] == 0 and all(queued[1:]), queued
    assert read_back(channel, queue, len(bodies)) == bodies


def test_anything_but_a_pika_connection_is_left_as_it_is() -> None:
    # A real TLS connection is left to pika too: tests/integration/test_tls.py.
    assert not send_at_once(object())
