"""Settings from the environment and `.env`, validated once at start."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Literal, Self
from urllib.parse import quote, urlsplit

import pika
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.errors import SettingsError
from models.worker_model import MIN_INTERVAL, StatusInterval, WorkerId

# Up to the last "@": pika accepts an unquoted "@" in the password. Any scheme: a
# mistyped one is shown too (in the line that says it is wrong), password masked.
_SCHEME = r"([a-z][a-z0-9+.-]*)://"
_URL_PASSWORD = re.compile(rf"({_SCHEME}[^:/@\s]*:)\S*@", re.IGNORECASE)
_URL_SCHEME = re.compile(_SCHEME, re.IGNORECASE)
TLS_PORT = 5671
BROKER_SCHEMES = ("amqp", "amqps")
# Longest a retention may be: far beyond any use, and within what dates can count back.
MAX_RETENTION = 100 * 365 * 24 * 3600.0


def mask_url(url: str) -> str:
    """`amqp://user:secret@host` -> `amqp://user:***@host`."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def mask_urls(urls: list[str]) -> str:
    """Where the brokers are, safe to log or show."""
    return ", ".join(mask_url(url) for url in urls)


def url_problem(url: str) -> str | None:
    """What is wrong with a broker URL, found now rather than as a traceback from pika at
    the first connect; None if nothing is."""
    scheme = _URL_SCHEME.match(url)
    if scheme is None or scheme[1].lower() not in BROKER_SCHEMES:
        return f"{mask_url(url)} is not an amqp:// or amqps:// URL"
    try:
        pika.URLParameters(url)
    except Exception as error:  # pika raises ValueError, IndexError, AttributeError…
        return f"{mask_url(url)}: {mask_url(str(error)) or type(error).__name__}"
    return None


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
    # TLS: amqps:// URLs in RABBITMQ_URL, or RABBITMQ_TLS for the host/port form. The
    # broker's certificate is checked against this CA bundle (unset: the system's trust
    # store) and must name the URL's host; the client certificate and key are optional.
    rabbitmq_tls: bool = False
    rabbitmq_tls_ca_file: Path | None = None
    rabbitmq_tls_cert_file: Path | None = None
    rabbitmq_tls_key_file: Path | None = None
    # Prefix of every exchange and queue name: several fleets can share one vhost.
    fireworks_namespace: str = Field(default="fireworks", pattern=r"^[A-Za-z0-9_-]{1,32}$")

    worker_id: WorkerId | None = None
    status_interval: StatusInterval = 2.0
    work_interval: float = Field(default=0.5, gt=0, le=3600)
    toggle_interval: float = Field(default=0.0, ge=0)
    command_ttl: float = Field(default=30.0, gt=0, le=86400)
    worker_retention: float = Field(default=3600.0, gt=0, le=MAX_RETENTION)

    # The monitor's HTTP API and dashboard (port 0: none), and its history database
    # (empty: none). Outside compose the API listens on this machine only.
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    # Live event streams served at once: each holds a connection and up to STREAM_BACKLOG
    # queued events, so a client that opens them in a loop cannot exhaust the monitor.
    http_max_streams: int = Field(default=100, ge=1, le=100_000)
    fireworks_db: str | None = "fireworks.db"
    history_retention: float = Field(default=7 * 24 * 3600, gt=0, le=MAX_RETENTION)
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
        "rabbitmq_tls_ca_file",
        "rabbitmq_tls_cert_file",
        "rabbitmq_tls_key_file",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes `${FIREWORKS_API_TOKEN:-}` as an empty string: "not set".
        return None if value == "" else value

    @field_validator(
        "rabbitmq_default_pass", "rabbitmq_url", "fireworks_api_token", "command_signing_key"
    )
    @classmethod
    def _utf8(cls, secret: SecretStr | None) -> SecretStr | None:
        # Secrets go on the wire as UTF-8; bytes that are not (kept by Python as surrogate
        # escapes) would fail at every use instead, a signing key at every command.
        if secret is not None:
            try:
                secret.get_secret_value().encode()
            except UnicodeEncodeError:
                raise PydanticCustomError("not_utf8", "must be UTF-8 text") from None
        return secret

    @field_validator("toggle_interval")
    @classmethod
    def _off_or_periodic(cls, seconds: float) -> float:
        if 0 < seconds < MIN_INTERVAL:
            raise PydanticCustomError(
                "toggle_interval",
                "Input should be 0 (off) or greater than or equal to {least}",
                {"least": MIN_INTERVAL},
            )
        return seconds

    @field_validator("rabbitmq_tls_ca_file", "rabbitmq_tls_cert_file", "rabbitmq_tls_key_file")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        # Found now, as one settings line, rather than as a traceback at the first connect.
        if path is not None:
            try:
                with path.open("rb"):
                    pass
            except OSError as error:
                raise PydanticCustomError(
                    "unreadable_file",
                    "cannot read {path}: {reason}",
                    {"path": str(path), "reason": error.strerror or type(error).__name__},
                ) from None
        return path

    @field_validator("fireworks_api_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (read for its check: a port that is no number raises)
        except ValueError as error:
            raise PydanticCustomError(
                "api_url", "{url}: {error}", {"url": url, "error": str(error)}
            ) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PydanticCustomError(
                "api_url", "{url} is not an http:// or https:// URL", {"url": url}
            )
        return url

    @model_validator(mode="after")
    def _client_cert_and_key_together(self) -> Self:
        if (self.rabbitmq_tls_cert_file is None) != (self.rabbitmq_tls_key_file is None):
            raise PydanticCustomError(
                "tls_client_pair",
                "RABBITMQ_TLS_CERT_FILE and RABBITMQ_TLS_KEY_FILE go together: set both or neither",
            )
        return self

    @model_validator(mode="after")
    def _brokers_make_sense(self) -> Self:
        source = "RABBITMQ_URL" if self.rabbitmq_url is not None else "RABBITMQ_HOST/PORT/VHOST"
        urls = self.broker_urls()
        if not urls:
            raise PydanticCustomError("no_broker", "RABBITMQ_URL names no broker")
        for url in urls:
            if (problem := url_problem(url)) is not None:
                raise PydanticCustomError(
                    "broker_url", "{source}: {problem}", {"source": source, "problem": problem}
                )
        return self

    def broker_port(self) -> int:
        """RABBITMQ_PORT, or AMQPS's own port when TLS is on and no port was given."""
        if self.rabbitmq_tls and "rabbitmq_port" not in self.model_fields_set:
            return TLS_PORT
        return self.rabbitmq_port

    def broker_urls(self) -> list[str]:
        """Broker addresses with credentials, in the order to try them."""
        if self.rabbitmq_url is not None:
            return self.rabbitmq_url.get_secret_value().replace(",", " ").split()
        scheme = "amqps" if self.rabbitmq_tls else "amqp"
        user = quote(self.rabbitmq_default_user, safe="")
        password = quote(self.rabbitmq_default_pass.get_secret_value(), safe="")
        vhost = quote(self.rabbitmq_vhost, safe="")
        address = f"{self.rabbitmq_host}:{self.broker_port()}"
        return [f"{scheme}://{user}:{password}@{address}/{vhost}"]

    def shown(self) -> dict[str, str]:
        """Every setting by its environment name, secrets masked: safe to print."""
        shown = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "rabbitmq_url" and value is not None:
                text = mask_urls(self.broker_urls())
            elif name == "rabbitmq_port":
                text = str(self.broker_port())
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
        raise settings_error(error) from None
    except UnicodeDecodeError as error:  # only .env is read as text here
        raise SettingsError(
            f".env is not UTF-8 text: {error.reason} at byte {error.start}"
        ) from None


def settings_error(error: ValidationError) -> SettingsError:
    """One line naming the first bad setting."""
    first = error.errors(include_url=False, include_input=False)[0]
    if not first["loc"]:  # a rule across settings names them itself
        return SettingsError(f"invalid settings: {first['msg']}")
    name = str(first["loc"][0]).upper()
    return SettingsError(f"invalid setting {name}: {first['msg']}")
