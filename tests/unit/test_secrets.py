"""Secrets never reach an error message, a log line or ``streamrec settings``; secret files.

The clients on a SASL broker, at DEBUG, are tests/integration/test_secrets.py.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from stream.cli import MASK, mask_secrets_in_logs, secret_renderings
from stream.kafka.config import kafka_python_options
from stream.settings import Settings, get_settings
from tests.helpers import REPO

PASSWORD = "pw'\"\\-é-" + "hunter2-0123"
TOKEN = "api-token-0123456789abcdef"


@pytest.fixture
def env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("STREAMREC_"):
            monkeypatch.delenv(key)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.fixture
def restore_record_factory():
    factory = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(factory)


def sasl_settings(**overrides) -> Settings:
    return Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="streamrec",
                    kafka_sasl_password=PASSWORD, api_token=TOKEN, **overrides)


def leaks(text: str, secrets=(PASSWORD, TOKEN)) -> list[str]:
    return [r for r in secret_renderings(secrets) if r in text]


def log_what_kafka_python_logs(settings: Settings) -> None:
    """The two kafka-python DEBUG lines that hold the SASL password, made by kafka-python's own
    code: the admin client's configuration, and a connection's SASL/PLAIN request."""
    from kafka.net.sasl.plain import SaslMechanismPlain
    from kafka.protocol.sasl import SaslAuthenticateRequest

    options = kafka_python_options(settings)
    logging.getLogger("kafka.admin.client").debug("Starting KafkaAdminClient with configuration: %s", options)
    request = SaslAuthenticateRequest(SaslMechanismPlain(**options).auth_bytes())
    logging.getLogger("kafka.net.connection").debug("%s Request %d: %s", "<KafkaConnection>", 3, request)


def test_kafka_python_logs_the_password_at_debug_unless_masked(caplog, restore_record_factory):
    settings = sasl_settings()
    with caplog.at_level(logging.DEBUG):
        log_what_kafka_python_logs(settings)
    assert leaks(caplog.text, [PASSWORD])  # what the mask is for: kafka-python shows it
    caplog.clear()
    mask_secrets_in_logs(settings.secret_values())
    with caplog.at_level(logging.DEBUG):
        log_what_kafka_python_logs(settings)
    assert "Starting KafkaAdminClient" in caplog.text and "SaslAuthenticateRequest" in caplog.text
    assert MASK in caplog.text
    assert not leaks(caplog.text), caplog.text


def test_masked_in_messages_arguments_tracebacks_and_stacks(caplog, restore_record_factory):
    mask_secrets_in_logs([PASSWORD, TOKEN])
    log = logging.getLogger("some.library")
    with caplog.at_level(logging.DEBUG):
        log.debug("json %s", __import__("json").dumps({"password": PASSWORD}))
        log.info("url https://u:%s@host/", __import__("urllib.parse").parse.quote(PASSWORD, safe=""))
        log.warning("header Authorization: Bearer " + TOKEN)
        log.error("bytes %r", PASSWORD.encode())
        try:
            raise RuntimeError(f"connect failed with password={PASSWORD!r}")
        except RuntimeError:
            log.exception("boom")
        log.debug("stack", stack_info=True, extra={"x": 1})
        log.info("bad format %d", "not a number " + PASSWORD)  # logging itself would print msg and args
        log.info("nothing secret %s", 42)
    assert not leaks(caplog.text), caplog.text
    assert "boom" in caplog.text and "RuntimeError" in caplog.text and "nothing secret 42" in caplog.text
    assert not leaks("".join(str(vars(r)) for r in caplog.records))


def test_no_secret_no_mask(restore_record_factory):
    factory = logging.getLogRecordFactory()
    mask_secrets_in_logs(Settings().secret_values())
    assert logging.getLogRecordFactory() is factory


def test_validation_errors_hide_the_values(env):
    """pydantic's errors quote what they saw: a model validator's error quoted every input."""
    env.setenv("STREAMREC_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    env.setenv("STREAMREC_KAFKA_SASL_PASSWORD", PASSWORD)  # no user: the model validator refuses
    env.setenv("STREAMREC_API_TOKEN", TOKEN)
    with pytest.raises(Exception) as raised:
        get_settings()
    assert "needs STREAMREC_KAFKA_SASL_USERNAME" in str(raised.value)
    assert not leaks(str(raised.value))
    env.setenv("STREAMREC_API_TOKEN", "bad token " + PASSWORD)
    with pytest.raises(Exception) as raised:
        get_settings()
    assert "STREAMREC_API_TOKEN must be" in str(raised.value) and not leaks(str(raised.value))


def run_settings_command(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    return subprocess.run([sys.executable, "-m", "stream.cli", "settings"], env={**clean, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_streamrec_settings_never_prints_a_password(tmp_path):
    secrets = {"STREAMREC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "STREAMREC_KAFKA_SASL_PASSWORD": PASSWORD,
               "STREAMREC_KAFKA_SSL_KEY_PASSWORD": "key-" + PASSWORD, "STREAMREC_API_TOKEN": TOKEN}
    for invalid in ({}, {"STREAMREC_TOP_K": "abc"}, {"STREAMREC_KAFKA_SASL_MECHANISM": PASSWORD},
                    {"STREAMREC_KAFKA_SASL_USERNAME": "streamrec", "STREAMREC_API_TOKEN": PASSWORD}):
        done = run_settings_command({**secrets, **invalid})
        assert done.returncode == 2, done
        assert "invalid STREAMREC_* settings" in done.stderr
        assert not leaks(done.stdout + done.stderr, [PASSWORD, "key-" + PASSWORD, TOKEN]), done.stderr
    done = run_settings_command({**secrets, "STREAMREC_KAFKA_SASL_USERNAME": "streamrec"})
    assert done.returncode == 0, done.stderr
    assert '"kafka_sasl_password": "**********"' in done.stdout and '"api_token": "**********"' in done.stdout
    assert not leaks(done.stdout + done.stderr, [PASSWORD, "key-" + PASSWORD, TOKEN])


def test_secret_files_are_read_from_the_secrets_dir(env, tmp_path):
    (tmp_path / "streamrec_kafka_sasl_password").write_text(PASSWORD + "\n", encoding="utf-8")
    (tmp_path / "STREAMREC_API_TOKEN").write_text(TOKEN, encoding="utf-8")  # either case
    env.setenv("STREAMREC_SECRETS_DIR", str(tmp_path))
    env.setenv("STREAMREC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    env.setenv("STREAMREC_KAFKA_SASL_USERNAME", "streamrec")
    settings = get_settings()
    assert settings.kafka_sasl_password.get_secret_value() == PASSWORD  # stripped
    assert settings.api_token.get_secret_value() == TOKEN
    assert settings.secrets_dir == tmp_path
    assert settings.redacted()["kafka_sasl_password"] == MASK
    # A variable that is set wins over its file.
    env.setenv("STREAMREC_API_TOKEN", "from-the-variable-0123")
    get_settings.cache_clear()
    assert get_settings().api_token.get_secret_value() == "from-the-variable-0123"
    # Passed as an argument (tests, LocalWorker's settings) it is read as well.
    env.delenv("STREAMREC_SECRETS_DIR")
    assert Settings(secrets_dir=tmp_path, kafka_security_protocol="SASL_SSL",
                    kafka_sasl_username="u").kafka_sasl_password.get_secret_value() == PASSWORD


def test_secrets_dir_default_and_errors(env, tmp_path, monkeypatch):
    import stream.settings as settings_module

    assert Settings().secrets_dir is None and Settings().api_token is None
    monkeypatch.setattr(settings_module, "SECRETS_FOLDER", tmp_path)  # as /run/secrets in a container
    (tmp_path / "streamrec_api_token").write_text(TOKEN)
    assert Settings().api_token.get_secret_value() == TOKEN
    env.setenv("STREAMREC_SECRETS_DIR", "")  # empty: no folder, not even /run/secrets
    assert Settings().api_token is None
    env.setenv("STREAMREC_SECRETS_DIR", str(tmp_path / "missing"))
    with pytest.raises(Exception, match="STREAMREC_SECRETS_DIR=.*missing is not a folder"):
        get_settings()
