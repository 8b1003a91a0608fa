"""RabbitMQ definitions for a Fireworks deployment: its own vhost, its topology, and
three users with least privilege. The compose broker loads them at boot
(deploy/rabbitmq); `fireworks config broker-definitions` writes them from `.env`.

RabbitMQ grants per vhost three regular expressions on resource names (configure:
declare and delete; write: publish, and bind a queue; read: consume, purge, and be
the exchange a queue is bound to) and, on topic exchanges, two on routing keys
(write: publish; read: bind).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.settings import settings_error
from bus.topology import ECHO_KEY, GOODBYE_KEY, REGISTER_KEY, STATUS_BINDINGS, Topology
from models.worker_model import FLEET, WORKER_ID_PATTERN

ADMIN = "fireworks-admin"
MONITOR = "fireworks-monitor"
WORKER = "fireworks-worker"
DEFAULT_VHOST = "fireworks"
HASHING = "rabbit_password_hashing_sha256"
NOTHING = "^$"
MIN_PASSWORD = 8


class Passwords(BaseSettings):
    """The three accounts' passwords, from the environment or `.env`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    rabbitmq_admin_pass: SecretStr
    rabbitmq_monitor_pass: SecretStr
    rabbitmq_worker_pass: SecretStr

    @field_validator("*")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_PASSWORD:
            raise ValueError(f"must be at least {MIN_PASSWORD} characters")
        return value

    def by_user(self) -> dict[str, str]:
        return {
            ADMIN: self.rabbitmq_admin_pass.get_secret_value(),
            MONITOR: self.rabbitmq_monitor_pass.get_secret_value(),
            WORKER: self.rabbitmq_worker_pass.get_secret_value(),
        }


def load_passwords() -> Passwords:
    """The passwords, or SettingsError with one line naming the missing or bad one."""
    try:
        return Passwords()
    except ValidationError as error:
        raise settings_error(error) from None


@dataclass(frozen=True)
class Grant:
    configure: str
    write: str
    read: str
    # exchange -> (write, read) routing-key patterns, for topic exchanges
    topics: dict[str, tuple[str, str]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()


def grants(topology: Topology) -> dict[str, Grant]:
    """What each user may do in the vhost. The worker user may publish only
    registrations, goodbyes, statuses (and dead letters), and declare, bind and read
    only worker queues; it may not publish commands, touch the monitor's queues, or
    declare or delete exchanges."""
    ns = re.escape(topology.namespace)
    worker_key = f"({WORKER_ID_PATTERN}|{FLEET})"

    def names(*alternatives: str) -> str:
        return f"^{ns}\\.({'|'.join(alternatives)})$"

    def keys(*alternatives: str) -> str:
        return f"^({'|'.join(alternatives)})$"

    worker_queues, monitor_queues = r"worker\..+", r"monitor\..+"
    return {
        ADMIN: Grant(".*", ".*", ".*", tags=("administrator",)),
        MONITOR: Grant(
            configure=names("register", "command", "status", "dead", monitor_queues),
            write=names("command", "status", "dead", monitor_queues),
            read=names("register", "status", "dead", monitor_queues),
            topics={
                topology.command_exchange: (keys(rf"cmd\.{worker_key}"), NOTHING),
                topology.status_exchange: (
                    keys(re.escape(ECHO_KEY)),
                    keys(*(re.escape(key) for key in STATUS_BINDINGS)),
                ),
                topology.register_exchange: (NOTHING, keys("#")),
            },
        ),
        WORKER: Grant(
            configure=names(worker_queues),
            write=names("register", "status", "dead", worker_queues),
            read=names("command", worker_queues),
            topics={
                topology.register_exchange: (
                    keys(rf"({REGISTER_KEY}|{GOODBYE_KEY})\.{WORKER_ID_PATTERN}"),
                    NOTHING,
                ),
                topology.status_exchange: (keys(rf"status\.{WORKER_ID_PATTERN}"), NOTHING),
                topology.command_exchange: (NOTHING, keys(rf"cmd\.{worker_key}")),
            },
        ),
    }


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's salted SHA-256: base64(salt + sha256(salt + password)), 4-byte salt."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(
    topology: Topology, passwords: dict[str, str], vhost: str = DEFAULT_VHOST
) -> dict[str, Any]:
    """The definitions document RabbitMQ imports (`load_definitions`)."""
    users, permissions, topic_permissions = [], [], []
    for user, grant in grants(topology).items():
        users.append(
            {
                "name": user,
                "password_hash": password_hash(passwords[user]),
                "hashing_algorithm": HASHING,
                "tags": list(grant.tags),
            }
        )
        permissions.append(
            {
                "user": user,
                "vhost": vhost,
                "configure": grant.configure,
                "write": grant.write,
                "read": grant.read,
            }
        )
        for exchange, (write, read) in grant.topics.items():
            topic_permissions.append(
                {"user": user, "vhost": vhost, "exchange": exchange, "write": write, "read": read}
            )
    return {
        "users": users,
        "vhosts": [{"name": vhost}],
        "permissions": permissions,
        "topic_permissions": topic_permissions,
        "exchanges": [
            {
                "name": exchange.name,
                "vhost": vhost,
                "type": exchange.type,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for exchange in topology.exchanges()
        ],
        "queues": [
            {
                "name": queue.name,
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": queue.arguments,
            }
            for queue in topology.monitor_queues()
        ],
        "bindings": [
            {
                "source": binding.exchange,
                "vhost": vhost,
                "destination": binding.queue,
                "destination_type": "queue",
                "routing_key": binding.key,
                "arguments": {},
            }
            for binding in topology.monitor_bindings()
        ],
    }
