"""Settings: defaults, environment and .env, broker URLs, and secrets kept out of sight."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from pydantic import ValidationError

from bus.errors import SettingsError
from bus.settings import Settings, load_settings, mask_url, mask_urls

SECRET = "s3cr3t-Pa55"


# No setting from the developer's shell or the repository's .env leaks in (conftest).
pytestmark = pytest.mark.usefixtures("clean_env")


def test_defaults() -> None:
    settings = Settings()
    assert settings.rabbitmq_host == "localhost"
    assert settings.rabbitmq_port == 5672
    assert settings.rabbitmq_default_user == "guest"
    assert settings.rabbitmq_default_pass.get_secret_value() == "guest"
    assert settings.rabbitmq_vhost == "/"
    assert settings.rabbitmq_url is None
    assert settings.rabbitmq_heartbeat == 10
    assert settings.fireworks_namespace == "fireworks"
    assert settings.worker_id is None
    assert settings.status_interval == 2.0
    assert settings.work_interval == 0.5
    assert settings.toggle_interval == 0.0
    assert settings.command_ttl == 30.0
    assert settings.worker_retention == 3600.0
    assert settings.log_level == "INFO"
    assert settings.log_format == "text"
    assert settings.broker_urls() == ["amqp://guest:guest@localhost:5672/%2F"]


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITMQ_HOST", "broker.internal")
    monkeypatch.setenv("RABBITMQ_PORT", "5673")
    monkeypatch.setenv("RABBITMQ_DEFAULT_USER", "fw")
    monkeypatch.setenv("RABBITMQ_DEFAULT_PASS", SECRET)
    monkeypatch.setenv("RABBITMQ_VHOST", "fleet")
    monkeypatch.setenv("STATUS_INTERVAL", "0.25")
    monkeypatch.setenv("TOGGLE_INTERVAL", "10")
    monkeypatch.setenv("WORKER_ID", "w-7")
    monkeypatch.setenv("FIREWORKS_NAMESPACE", "test_ns")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("LOG_FORMAT", "json")

    settings = load_settings()

    assert settings.rabbitmq_host == "broker.internal"
    assert settings.rabbitmq_port == 5673
    assert settings.rabbitmq_default_user == "fw"
    assert settings.rabbitmq_default_pass.get_secret_value() == SECRET
    assert settings.status_interval == 0.25
    assert settings.toggle_interval == 10.0
    assert settings.worker_id == "w-7"
    assert settings.fireworks_namespace == "test_ns"
    assert settings.log_level == "DEBUG"  # case normalised
    assert settings.log_format == "json"
    assert settings.broker_urls() == [f"amqp://fw:{SECRET}@broker.internal:5673/fleet"]


def test_dotenv_in_the_working_directory_is_read(clean_env: Path) -> None:
    (clean_env / ".env").write_text(
        "# comment\nSTATUS_INTERVAL=7\nRABBITMQ_DEFAULT_PASS=from-dotenv\nUNRELATED=1\n"
    )
    settings = Settings()
    assert settings.status_interval == 7.0
    assert settings.rabbitmq_default_pass.get_secret_value() == "from-dotenv"


def test_environment_wins_over_dotenv(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text("STATUS_INTERVAL=7\n")
    monkeypatch.setenv("STATUS_INTERVAL", "3")
    assert Settings().status_interval == 3.0


def test_overrides_passed_to_load_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATUS_INTERVAL", "3")
    assert load_settings(status_interval=9).status_interval == 9.0


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.rabbitmq_host = "elsewhere"  # type: ignore[misc]


# -- broker URLs -----------------------------------------------------------------------------


def test_broker_url_quotes_user_password_and_vhost(monkeypatch: pytest.MonkeyPatch) -> None:
    user, password, vhost = "us@r:x", "p@ss/w:rd%?#", "/"
    monkeypatch.setenv("RABBITMQ_DEFAULT_USER", user)
    monkeypatch.setenv("RABBITMQ_DEFAULT_PASS", password)
    monkeypatch.setenv("RABBITMQ_VHOST", vhost)
    monkeypatch.setenv("RABBITMQ_HOST", "h")

    [url] = Settings().broker_urls()

    assert url == "amqp://us%40r%3Ax:p%40ss%2Fw%3Ard%25%3F%23@h:5672/%2F"
    parts = urlparse(url)
    assert unquote(parts.username or "") == user
    assert unquote(parts.password or "") == password
    assert parts.hostname == "h"
    assert parts.port == 5672
    assert unquote(parts.path[1:]) == vhost


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("amqp://a:x@h1/", ["amqp://a:x@h1/"]),
        (
            "amqp://a:x@h1:5672/, amqp://b:y@h2:5672/",
            ["amqp://a:x@h1:5672/", "amqp://b:y@h2:5672/"],
        ),
        (
            "amqp://a:x@h1/ amqps://b:y@h2/,amqp://c:z@h3/",
            ["amqp://a:x@h1/", "amqps://b:y@h2/", "amqp://c:z@h3/"],
        ),
        (" ,amqp://a:x@h1/,, \tamqp://b:y@h2/ ,", ["amqp://a:x@h1/", "amqp://b:y@h2/"]),
    ],
)
def test_rabbitmq_url_lists_brokers_in_order(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("RABBITMQ_HOST", "ignored-host")
    monkeypatch.setenv("RABBITMQ_URL", raw)
    assert Settings().broker_urls() == expected


def test_shown_brokers_never_contains_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITMQ_DEFAULT_USER", "fw")
    monkeypatch.setenv("RABBITMQ_DEFAULT_PASS", SECRET)
    monkeypatch.setenv("RABBITMQ_HOST", "h")
    display = mask_urls(Settings().broker_urls())
    assert SECRET not in display
    assert display == "amqp://fw:***@h:5672/%2F"


def test_shown_brokers_masks_every_broker_of_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "RABBITMQ_URL", f"amqp://a:{SECRET}@h1:5672/v, amqps://b:{SECRET}2@h2:5671/v"
    )
    display = mask_urls(Settings().broker_urls())
    assert SECRET not in display
    assert display == "amqp://a:***@h1:5672/v, amqps://b:***@h2:5671/v"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://user:secret@host:5672/vh", "amqp://user:***@host:5672/vh"),
        ("amqps://user:secret@host/", "amqps://user:***@host/"),
        ("amqp://:secret@host/", "amqp://:***@host/"),
        ("amqp://user:p%40ss%2Fw@host/", "amqp://user:***@host/"),
        ("amqp://user:@host/", "amqp://user:***@host/"),
        ("amqp://host:5672/vh", "amqp://host:5672/vh"),
        ("amqp://user@host/", "amqp://user@host/"),
        ("amqp://localhost", "amqp://localhost"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert "secret" not in mask_url(url)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("AMQP://user:secret@host/", id="upper-case-scheme"),
        pytest.param("Amqps://user:secret@host/", id="mixed-case-scheme"),
        pytest.param("amqp://user:top@secret@host/", id="unquoted-at-in-password"),
        pytest.param("ampq://user:secret@host/", id="mistyped-scheme"),
        pytest.param("http://user:secret@host/", id="another-scheme"),
    ],
)
def test_mask_url_hides_passwords_pika_would_accept(url: str) -> None:
    assert "secret" not in mask_url(url)


@pytest.mark.parametrize(
    ("env", "value", "field", "expected"),
    [
        ("STATUS_INTERVAL", "0.1", "status_interval", 0.1),  # ten reports a second at most
        ("STATUS_INTERVAL", "3600", "status_interval", 3600.0),
        ("TOGGLE_INTERVAL", "0", "toggle_interval", 0.0),  # off
        ("TOGGLE_INTERVAL", "0.1", "toggle_interval", 0.1),
    ],
)
def test_intervals_at_their_bounds_are_accepted(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, field: str, expected: float
) -> None:
    monkeypatch.setenv(env, value)
    assert getattr(load_settings(), field) == expected


# -- bad values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "value", "name"),
    [
        ("STATUS_INTERVAL", "-1", "STATUS_INTERVAL"),
        ("STATUS_INTERVAL", "0", "STATUS_INTERVAL"),
        ("STATUS_INTERVAL", "0.000001", "STATUS_INTERVAL"),  # would flood; the monitor spun
        ("STATUS_INTERVAL", "soon", "STATUS_INTERVAL"),
        ("RABBITMQ_PORT", "abc", "RABBITMQ_PORT"),
        ("RABBITMQ_PORT", "0", "RABBITMQ_PORT"),
        ("RABBITMQ_PORT", "70000", "RABBITMQ_PORT"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL"),
        ("WORKER_ID", "all", "WORKER_ID"),
        ("WORKER_ID", "two words", "WORKER_ID"),
        ("FIREWORKS_NAMESPACE", "a.b", "FIREWORKS_NAMESPACE"),
        ("COMMAND_TTL", "0", "COMMAND_TTL"),
        ("RABBITMQ_HEARTBEAT", "-5", "RABBITMQ_HEARTBEAT"),
        ("toggle_interval", "-1", "TOGGLE_INTERVAL"),  # env names are case-insensitive
        ("TOGGLE_INTERVAL", "0.01", "TOGGLE_INTERVAL"),  # 0 is off; above it, 0.1 s at least
        ("HISTORY_RETENTION", "inf", "HISTORY_RETENTION"),
        ("HISTORY_RETENTION", "1e12", "HISTORY_RETENTION"),  # past what dates count back
        ("WORKER_RETENTION", "inf", "WORKER_RETENTION"),
        ("FIREWORKS_API_URL", "not-a-url", "FIREWORKS_API_URL"),
        ("FIREWORKS_API_URL", "http://127.0.0.1:notaport", "FIREWORKS_API_URL"),
        ("FIREWORKS_API_URL", "http://[::1", "FIREWORKS_API_URL"),
        ("FIREWORKS_API_URL", "ftp://monitor/", "FIREWORKS_API_URL"),
    ],
)
def test_bad_value_raises_one_line_naming_the_setting_without_secrets(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, name: str
) -> None:
    monkeypatch.setenv("RABBITMQ_DEFAULT_PASS", SECRET)
    monkeypatch.setenv("RABBITMQ_URL", f"amqp://u:{SECRET}@h/")
    monkeypatch.setenv(env, value)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"invalid setting {name}: ")
    assert SECRET not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True  # no chained pydantic error to print


@pytest.mark.parametrize(
    ("env", "value", "problem"),
    [
        ("RABBITMQ_URL", "not-a-url", "not-a-url is not an amqp:// or amqps:// URL"),
        (
            "RABBITMQ_URL",
            f"ampq://u:{SECRET}@h/",
            "ampq://u:***@h/ is not an amqp:// or amqps:// URL",
        ),
        ("RABBITMQ_URL", ",", "names no broker"),
        (
            "RABBITMQ_URL",
            f"amqp://u:{SECRET}@h/ amqp://u:{SECRET}@h:notaport/",
            "amqp://u:***@h:notaport/: Port could not be cast to integer value as 'notaport'",
        ),
        ("RABBITMQ_URL", f"amqp://u:{SECRET}@h:99999/", "amqp://u:***@h:99999/: Port out of range"),
        ("RABBITMQ_URL", f"amqp://u:{SECRET}@[::1", "Invalid IPv6 URL"),
        ("RABBITMQ_URL", f"amqp://u:{SECRET}@h/?heartbeat=abc", "Invalid heartbeat value"),
        ("RABBITMQ_URL", f"amqp://u:{SECRET}@h/?bogus=1", "Unknown URL parameter: 'bogus'"),
        (
            "RABBITMQ_HOST",
            "127.0.0.1:5672",
            "RABBITMQ_HOST/PORT/VHOST: amqp://guest:***@127.0.0.1:5672:5672/",
        ),
    ],
)
def test_bad_broker_address_is_one_line_without_secrets(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, problem: str
) -> None:
    # pika would find these only at the first connect, as a traceback.
    monkeypatch.setenv("RABBITMQ_DEFAULT_PASS", SECRET)
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("invalid settings: RABBITMQ_")
    assert problem in message
    assert SECRET not in message and "\n" not in message


@pytest.mark.parametrize(
    "env", ["RABBITMQ_DEFAULT_PASS", "RABBITMQ_URL", "FIREWORKS_API_TOKEN", "COMMAND_SIGNING_KEY"]
)
def test_a_secret_that_is_not_utf8_is_one_line(monkeypatch: pytest.MonkeyPatch, env: str) -> None:
    # The byte 0xff from the environment, as Python keeps it (a surrogate escape).
    value = "amqp://u:p\udcff@h/" if env == "RABBITMQ_URL" else "s3cret\udcff"
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError, match=f"^invalid setting {env}: must be UTF-8 text$"):
        load_settings()


def test_bad_value_in_dotenv_is_reported_the_same_way(clean_env: Path) -> None:
    (clean_env / ".env").write_text("RABBITMQ_PORT=abc\n")
    with pytest.raises(SettingsError, match=r"^invalid setting RABBITMQ_PORT: "):
        load_settings()


def test_a_dotenv_that_is_not_utf8_is_one_line(clean_env: Path) -> None:
    (clean_env / ".env").write_bytes(b"LOG_LEVEL=INFO\nX=\xff\n")
    with pytest.raises(
        SettingsError, match=r"^\.env is not UTF-8 text: invalid start byte at byte 17$"
    ):
        load_settings()


def test_bad_override_is_reported_the_same_way() -> None:
    with pytest.raises(SettingsError, match=r"^invalid setting STATUS_INTERVAL: "):
        load_settings(status_interval=-1)


@pytest.mark.parametrize(("value", "expected"), [("JSON", "json"), ("Text", "text")])
def test_log_format_is_case_insensitive_like_log_level(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    monkeypatch.setenv("LOG_FORMAT", value)
    assert load_settings().log_format == expected


# -- printing ------------------------------------------------------------------------------


def test_repr_and_str_never_show_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITMQ_DEFAULT_PASS", SECRET)
    monkeypatch.setenv("RABBITMQ_URL", f"amqp://u:{SECRET}2@h/")
    settings = Settings()
    assert settings.rabbitmq_default_pass.get_secret_value() == SECRET  # it is there...
    for text in (repr(settings), str(settings), f"{settings}", settings.model_dump_json()):
        assert SECRET not in text  # ...but never printed
    assert "rabbitmq_host" in repr(settings)


# -- worker id -------------------------------------------------------------------------------


def test_resolved_worker_id_prefers_worker_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "box")
    monkeypatch.setenv("WORKER_ID", "w-1")
    assert Settings().resolved_worker_id() == "w-1"


@pytest.mark.parametrize(
    ("hostname", "expected"),
    [("a1b2c3d4e5f6", "a1b2c3d4e5f6"), ("box-7.example.org", "box-7"), ("box", "box")],
)
def test_resolved_worker_id_falls_back_to_the_short_hostname(
    monkeypatch: pytest.MonkeyPatch, hostname: str, expected: str
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: hostname)
    assert Settings().resolved_worker_id() == expected


# -- TLS -------------------------------------------------------------------------------------


def test_tls_is_off_by_default() -> None:
    settings = Settings()
    assert settings.rabbitmq_tls is False
    assert settings.rabbitmq_tls_ca_file is None
    assert settings.rabbitmq_tls_cert_file is None
    assert settings.rabbitmq_tls_key_file is None


def test_tls_for_host_and_port_uses_amqps_on_port_5671(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITMQ_TLS", "true")
    monkeypatch.setenv("RABBITMQ_HOST", "broker.internal")
    settings = load_settings()
    assert settings.broker_urls() == ["amqps://guest:guest@broker.internal:5671/%2F"]
    assert settings.shown()["RABBITMQ_PORT"] == "5671"  # what it connects to


def test_tls_keeps_a_port_set_explicitly_even_5672(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITMQ_TLS", "1")
    monkeypatch.setenv("RABBITMQ_PORT", "5672")
    assert Settings().broker_urls() == ["amqps://guest:guest@localhost:5672/%2F"]


def test_tls_keeps_a_port_from_dotenv(clean_env: Path) -> None:
    (clean_env / ".env").write_text("RABBITMQ_TLS=yes\nRABBITMQ_PORT=15671\n")
    assert Settings().broker_urls() == ["amqps://guest:guest@localhost:15671/%2F"]


def test_rabbitmq_url_decides_tls_by_its_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITMQ_TLS", "true")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://a:x@h1/, amqps://b:y@h2/")
    assert Settings().broker_urls() == ["amqp://a:x@h1/", "amqps://b:y@h2/"]


def test_tls_files_are_read_and_shown(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (clean_env / name).write_text("-----BEGIN-----\n")
    monkeypatch.setenv("RABBITMQ_TLS_CA_FILE", "ca.pem")
    monkeypatch.setenv("RABBITMQ_TLS_CERT_FILE", str(clean_env / "client.pem"))
    monkeypatch.setenv("RABBITMQ_TLS_KEY_FILE", str(clean_env / "client.key"))
    settings = load_settings()
    assert settings.rabbitmq_tls_ca_file == Path("ca.pem")
    shown = settings.shown()
    assert shown["RABBITMQ_TLS_CA_FILE"] == "ca.pem"
    assert shown["RABBITMQ_TLS_KEY_FILE"] == str(clean_env / "client.key")
    assert shown["RABBITMQ_TLS"] == "False"
    assert shown["RABBITMQ_PORT"] == "5672"


def test_empty_tls_files_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RABBITMQ_TLS_CA_FILE", "RABBITMQ_TLS_CERT_FILE", "RABBITMQ_TLS_KEY_FILE"):
        monkeypatch.setenv(name, "")
    settings = load_settings()
    assert settings.rabbitmq_tls_ca_file is None
    assert settings.rabbitmq_tls_cert_file is None


@pytest.mark.parametrize("name", ["RABBITMQ_TLS_CERT_FILE", "RABBITMQ_TLS_KEY_FILE"])
def test_client_certificate_and_key_go_together(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, name: str
) -> None:
    (clean_env / "half.pem").write_text("-----BEGIN-----\n")
    monkeypatch.setenv(name, "half.pem")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == (
        "invalid settings: RABBITMQ_TLS_CERT_FILE and RABBITMQ_TLS_KEY_FILE go together:"
        " set both or neither"
    )
    assert caught.value.__suppress_context__ is True


@pytest.mark.parametrize(
    ("name", "make", "problem"),
    [
        ("RABBITMQ_TLS_CA_FILE", False, "No such file or directory"),
        ("RABBITMQ_TLS_CERT_FILE", False, "No such file or directory"),
        ("RABBITMQ_TLS_KEY_FILE", True, "Is a directory"),
    ],
)
def test_unreadable_tls_file_is_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, name: str, make: bool, problem: str
) -> None:
    path = clean_env / "pki" / "file.pem"
    if make:
        path.mkdir(parents=True)
    monkeypatch.setenv(name, str(path))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == f"invalid setting {name}: cannot read {path}: {problem}"


def test_bad_tls_setting_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fireworks.cli import main

    monkeypatch.setenv("RABBITMQ_TLS_CA_FILE", "missing.pem")
    assert main(["config", "show"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "fireworks: invalid setting RABBITMQ_TLS_CA_FILE: cannot read missing.pem:"
        " No such file or directory"
    ]
