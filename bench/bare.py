"""The footprint floor: a process that uses pika and pydantic (one small model, validated
once: importing pydantic alone loads none of its validation machinery) and holds one
connection with three channels, idle (woken only by I/O). Usage: python -m bench.bare URL"""

from __future__ import annotations

import sys

import pika
import pydantic


class Hello(pydantic.BaseModel):
    worker_id: str
    active: bool


def main(url: str) -> None:
    Hello.model_validate_json(b'{"worker_id": "bare", "active": false}')
    params = pika.URLParameters(url)
    params.heartbeat = 10  # as Fireworks' default RABBITMQ_HEARTBEAT
    connection = pika.BlockingConnection(params)
    for _ in range(3):
        connection.channel()  # the connection holds them open
    print("@bench ready", flush=True)  # bench.common.say, without importing the bench
    while True:  # until SIGTERM
        connection.process_data_events(time_limit=None)


if __name__ == "__main__":
    main(sys.argv[1])
