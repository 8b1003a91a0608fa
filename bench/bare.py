"""The footprint floor: a process that imports pika and pydantic and holds one connection
with three channels, idle (woken only by I/O). Usage: python -m bench.bare URL"""

from __future__ import annotations

import sys

import pika
import pydantic


def main(url: str) -> None:
    params = pika.URLParameters(url)
    params.heartbeat = 10  # as Fireworks' default RABBITMQ_HEARTBEAT
    connection = pika.BlockingConnection(params)
    channels = [connection.channel() for _ in range(3)]
    assert pydantic.VERSION and len(channels) == 3
    print("@bench ready", flush=True)  # bench.common.say, without importing the bench
    while True:  # until SIGTERM
        connection.process_data_events(time_limit=None)


if __name__ == "__main__":
    main(sys.argv[1])
