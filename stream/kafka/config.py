"""Connection settings for the Kafka clients, built from one :class:`Settings`.

Faust (the worker, through ``stream.runtime.app.faust_broker_options``), aiokafka
(async readers) and kafka-python (the producer client, admin) get the same servers, the same security protocol, the same SASL
credentials and the very same ``ssl.SSLContext``, so a cluster that works for
one works for all.
"""

from __future__ import annotations

import ssl
from typing import Any

from stream.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A TLS context for ``SSL`` / ``SASL_SSL``; ``None`` for plaintext protocols."""
    if not settings.uses_tls:
        return None
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_certfile and settings.kafka_ssl_keyfile:
        password = settings.kafka_ssl_key_password
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile),
            str(settings.kafka_ssl_keyfile),
            password=password.get_secret_value() if password else None,
        )
    return context


def sasl_password(settings: Settings) -> str | None:
    secret = settings.kafka_sasl_password
    return secret.get_secret_value() if secret is not None else None


def _common_options(settings: Settings) -> dict[str, Any]:
    """What aiokafka and kafka-python take under the same names."""
    options: dict[str, Any] = {
        "bootstrap_servers": list(settings.kafka_bootstrap),
        "client_id": settings.kafka_client_id,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.uses_sasl:
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": sasl_password(settings),
        }
    return options


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``aiokafka.AIOKafkaConsumer`` / ``AIOKafkaProducer``."""
    return {**_common_options(settings), "ssl_context": ssl_context(settings)}


def kafka_python_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's ``KafkaProducer``, ``KafkaConsumer`` and ``KafkaAdminClient``."""
    options = _common_options(settings)
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    return options
