"""Settings from the environment and `.env`, validated once at start."""

from __future__ import annotations

import re
import socket
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.errors import SettingsError
from models.worker_model import WorkerId

# Up to the last "@": pika accepts an unquoted "@" in the password.
_URL_PASSWORD = re.compile(r"(amqps?://[^:/@\s]*:)\S*@", re.IGNORECASE)


def mask_url(url: str) -> str:
    """`amqp://user:secret@host` -> `amqp://user:***@host`."""
    return _URL_PASSWORD.sub(r"\1***@", url)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    rabbitmq_host: str = "localhost"
    rabbitmq_port: int = Field(default=5672, ge=1, le=65535)
    rabbitmq_default_user: str = "guest"
    rabbitmq_default_pass: SecretStr = SecretStr("guest")
    rabbitmq_vhost: str = "/"
    # Overrides the five above; may list several brokers, separated by commas or spaces.
    rabbitmq_url: SecretStr | None = None
    rabbitmq_heartbeat: int = Field(default=10, ge=0, le=600)
    # Prefix of every exchange and queue name: several fleets can share one vhost.
    fireworks_namespace: str = Field(default="fireworks", pattern=r"^[A-Za-z0-9_-]{1,32}$")

    worker_id: WorkerId | None = None
    status_interval: float = Field(default=2.0, gt=0, le=3600)
    work_interval: float = Field(default=0.5, gt=0, le=3600)
    toggle_interval: float = Field(default=0.0, ge=0)
    command_ttl: float = Field(default=30.0, gt=0, le=86400)
    worker_retention: float = Field(default=3600.0, gt=0)

    # The monitor's HTTP API and dashboard (port 0: none), and its history database
    # (empty: none). Outside compose the API listens on this machine only.
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    fireworks_db: str | None = "fireworks.db"
    history_retention: float = Field(default=7 * 24 * 3600, gt=0)
    # Where the CLI finds the monitor's API.
    fireworks_api_url: str = "http://127.0.0.1:8000"
    # When set, every write (and every read unless reads are opened) needs this token;
    # the CLI sends it. Unset: no token (the API then listens on this machine only).
    fireworks_api_token: SecretStr | None = None
    fireworks_api_open_reads: bool = False

    # Optional command signing (HMAC-SHA256): the monitor signs with this key, workers
    # holding it obey only commands signed with it.
    command_signing_key: SecretStr | None = None
    command_signing_key_id: str = Field(default="k1", pattern=r"^[A-Za-z0-9_.-]{1,32}$")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator(
        "worker_id",
        "rabbitmq_url",
        "fireworks_db",
        "fireworks_api_token",
        "command_signing_key",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes `${WORKER_ID:-}` as an empty string: that means "not set".
        return None if value == "" else value

    def broker_urls(self) -> list[str]:
        """Broker addresses with credentials, in the order to try them."""
        if self.rabbitmq_url is not None:
            return self.rabbitmq_url.get_secret_value().replace(",", " ").split()
        user = quote(self.rabbitmq_default_user, safe="")
        password = quote(self.rabbitmq_default_pass.get_secret_value(), safe="")
        vhost = quote(self.rabbitmq_vhost, safe="")
        return [f"amqp://{user}:{password}@{self.rabbitmq_host}:{self.rabbitmq_port}/{vhost}"]

    def broker_display(self) -> str:
        """Where the broker is, safe to log."""
        return ", ".join(mask_url(url) for url in self.broker_urls())

    def shown(self) -> dict[str, str]:
        """Every setting by its environment name, secrets masked: safe to print."""
        shown = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "rabbitmq_url" and value is not None:
                text = self.broker_display()
            elif isinstance(value, SecretStr):
                text = "***"
            else:
                text = "" if value is None else str(value)
            shown[name.upper()] = text
        return shown

    def resolved_worker_id(self) -> str:
        """WORKER_ID, else the hostname (unique per container under `--scale`)."""
        return self.worker_id or socket.gethostname().split(".")[0]


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, or SettingsError with one line naming the setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise SettingsError(f"invalid setting {name}: {first['msg']}") from None
