"""TLS for amqps:// brokers: the broker's certificate must chain to the configured CA
(or the system's trust store) and name the host of the URL; a client certificate is
presented when one is configured."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika

from bus.errors import SettingsError
from bus.settings import Settings

# The pika.SSLOptions for a broker host (pika ships no type hints).
SslOptionsFor = Callable[[str], Any]


def client_context(
    ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """Verifies the server (CERT_REQUIRED, hostname checked), TLS 1.2 or later."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError) as error:
        raise SettingsError(f"invalid setting RABBITMQ_TLS_CA_FILE: {error}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        try:
            # No password: an encrypted key fails here instead of prompting on a terminal.
            context.load_cert_chain(cert_file, key_file, password="")
        except (ssl.SSLError, OSError) as error:
            raise SettingsError(
                "invalid settings RABBITMQ_TLS_CERT_FILE/RABBITMQ_TLS_KEY_FILE: not a"
                f" certificate and its unencrypted private key ({error})"
            ) from None
    return context


def ssl_options_for(settings: Settings) -> SslOptionsFor | None:
    """Options for each amqps host; None when no broker URL is amqps (a context loads
    the trust store: a quarter second and megabytes a plain worker has no use for)."""
    if not any(url.lower().startswith("amqps://") for url in settings.broker_urls()):
        return None
    context = client_context(
        settings.rabbitmq_tls_ca_file,
        settings.rabbitmq_tls_cert_file,
        settings.rabbitmq_tls_key_file,
    )
    return lambda host: pika.SSLOptions(context, server_hostname=host)
