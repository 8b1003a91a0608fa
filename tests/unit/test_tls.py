"""The client's TLS context and the SSL options the bus gives amqps URLs (no broker)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from bus.errors import SettingsError
from bus.settings import Settings
from bus.tls import client_context, ssl_options_for


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(ca: trustme.CA, tmp_path: Path) -> dict[str, Path]:
    client = ca.issue_cert("fireworks-client")
    paths = {name: tmp_path / name for name in ("ca.pem", "client.pem", "client.key")}
    ca.cert_pem.write_to_path(str(paths["ca.pem"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client.pem"]))
    client.private_key_pem.write_to_path(str(paths["client.key"]))
    return paths


def test_the_server_is_always_verified_by_name_over_tls_1_2_or_later(
    files: dict[str, Path],
) -> None:
    context = client_context(files["ca.pem"])
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.cert_store_stats()["x509_ca"] == 1  # the given CA, not the system's


def test_options_name_the_broker_host(files: dict[str, Path]) -> None:
    settings = Settings(
        _env_file=None,
        rabbitmq_tls=True,
        rabbitmq_tls_ca_file=files["ca.pem"],
        rabbitmq_tls_cert_file=files["client.pem"],
        rabbitmq_tls_key_file=files["client.key"],
    )
    options_for = ssl_options_for(settings)
    assert options_for is not None
    first, second = options_for("broker-1.internal"), options_for("broker-2.internal")
    assert (first.server_hostname, second.server_hostname) == (
        "broker-1.internal",
        "broker-2.internal",
    )
    assert first.context is second.context  # the files are read once


def test_no_context_without_an_amqps_broker(files: dict[str, Path]) -> None:
    settings = Settings(_env_file=None, rabbitmq_tls_ca_file=files["ca.pem"])
    assert ssl_options_for(settings) is None
    assert ssl_options_for(settings.model_copy(update={"rabbitmq_tls": True})) is not None


def test_a_file_that_is_no_ca_bundle_names_the_setting(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(SettingsError, match=r"^invalid setting RABBITMQ_TLS_CA_FILE: "):
        client_context(garbage)


def test_a_key_of_another_certificate_names_both_settings(
    ca: trustme.CA, files: dict[str, Path], tmp_path: Path
) -> None:
    other = tmp_path / "other.key"
    ca.issue_cert("someone-else").private_key_pem.write_to_path(str(other))
    with pytest.raises(SettingsError) as caught:
        client_context(files["ca.pem"], files["client.pem"], other)
    message = str(caught.value)
    assert message.startswith("invalid settings RABBITMQ_TLS_CERT_FILE/RABBITMQ_TLS_KEY_FILE: ")
    assert "\n" not in message


def test_an_encrypted_key_fails_instead_of_prompting(
    files: dict[str, Path], tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key(files["client.key"].read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(SettingsError, match="unencrypted private key"):
        client_context(files["ca.pem"], files["client.pem"], encrypted)
