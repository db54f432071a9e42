import logging
import ssl

import faust
import pytest
from pydantic import SecretStr

from stream.errors import ConfigError
from stream.kafka.config import aiokafka_options, kafka_python_options
from stream.runtime.app import faust_broker_options
from stream.settings import Settings, get_settings

PASSWORD = "s3cr3t-Pa55word"


@pytest.fixture
def env(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("STREAMREC_"):
            monkeypatch.delenv(key)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_defaults_are_local_plaintext(env):
    s = get_settings()
    assert s.kafka_bootstrap == ("127.0.0.1:9092",)
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert s.processing_guarantee == "at_least_once"


def test_several_bootstrap_servers_from_one_variable(env):
    env.setenv("STREAMREC_KAFKA_BOOTSTRAP", "kafka://b1.example:9092, b2.example:9093;b3.example:9094")
    s = get_settings()
    assert s.kafka_bootstrap == ("b1.example:9092", "b2.example:9093", "b3.example:9094")
    assert faust_broker_options(s)["broker"] == [
        "kafka://b1.example:9092", "kafka://b2.example:9093", "kafka://b3.example:9094"]
    assert aiokafka_options(s)["bootstrap_servers"] == list(s.kafka_bootstrap)
    assert kafka_python_options(s)["bootstrap_servers"] == list(s.kafka_bootstrap)


@pytest.mark.parametrize("bad", ["nohost", "host:", "host:99999", ":9092", ""])
def test_bad_bootstrap_is_a_clear_config_error(env, bad):
    env.setenv("STREAMREC_KAFKA_BOOTSTRAP", bad)
    with pytest.raises(ConfigError, match="kafka_bootstrap|bootstrap"):
        get_settings()


def test_unknown_choice_is_rejected(env):
    env.setenv("STREAMREC_PROCESSING_GUARANTEE", "twice")
    with pytest.raises(ConfigError, match="processing_guarantee"):
        get_settings()


def test_sasl_needs_credentials(env):
    env.setenv("STREAMREC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="SASL_USERNAME"):
        get_settings()


def _sasl_ssl_env(env):
    env.setenv("STREAMREC_KAFKA_BOOTSTRAP", "b1:9093,b2:9093")
    env.setenv("STREAMREC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    env.setenv("STREAMREC_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    env.setenv("STREAMREC_KAFKA_SASL_USERNAME", "svc-streamrec")
    env.setenv("STREAMREC_KAFKA_SASL_PASSWORD", PASSWORD)


def test_sasl_ssl_reaches_all_three_clients_alike(env):
    _sasl_ssl_env(env)
    s = get_settings()

    creds = faust_broker_options(s)["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL"
    assert creds.mechanism.value == "SCRAM-SHA-512"
    assert (creds.username, creds.password) == ("svc-streamrec", PASSWORD)

    for options in (aiokafka_options(s), kafka_python_options(s)):
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_mechanism"] == "SCRAM-SHA-512"
        assert options["sasl_plain_username"] == "svc-streamrec"
        assert options["sasl_plain_password"] == PASSWORD
        ctx = options["ssl_context"]
        assert isinstance(ctx, ssl.SSLContext)
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert isinstance(creds.ssl_context, ssl.SSLContext)


def test_plain_ssl_without_sasl(env):
    env.setenv("STREAMREC_KAFKA_SECURITY_PROTOCOL", "SSL")
    s = get_settings()
    creds = faust_broker_options(s)["broker_credentials"]
    assert isinstance(creds, faust.SSLCredentials)
    assert "sasl_mechanism" not in aiokafka_options(s)
    assert isinstance(kafka_python_options(s)["ssl_context"], ssl.SSLContext)


def test_plaintext_has_no_credentials(env):
    s = get_settings()
    assert faust_broker_options(s)["broker_credentials"] is None
    assert aiokafka_options(s)["ssl_context"] is None
    assert "ssl_context" not in kafka_python_options(s)


def test_missing_tls_file_is_reported(env, tmp_path):
    env.setenv("STREAMREC_KAFKA_SECURITY_PROTOCOL", "SSL")
    env.setenv("STREAMREC_KAFKA_SSL_CAFILE", str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError, match="not a readable file"):
        get_settings()


def test_secrets_never_printed_or_logged(env, caplog):
    _sasl_ssl_env(env)
    env.setenv("STREAMREC_KAFKA_SSL_KEY_PASSWORD", "key-" + PASSWORD)
    with caplog.at_level(logging.DEBUG):
        s = get_settings()
    assert isinstance(s.kafka_sasl_password, SecretStr)
    for text in (repr(s), str(s), str(s.redacted()), s.model_dump_json(), caplog.text):
        assert PASSWORD not in text
    assert s.redacted()["kafka_sasl_password"] == "**********"
    assert "settings loaded" in caplog.text


def test_settings_are_frozen(env):
    s = get_settings()
    with pytest.raises(Exception):
        s.topic_prefix = "x"  # type: ignore[misc]


def test_topic_names_use_the_prefix():
    assert Settings(topic_prefix="t1.").topic("events") == "t1.events"


def test_group_timeouts_reach_faust_and_are_checked(env):
    from stream.runtime.app import create_app

    env.setenv("STREAMREC_GROUP_SESSION_TIMEOUT_S", "8")
    env.setenv("STREAMREC_GROUP_HEARTBEAT_INTERVAL_S", "2")
    get_settings.cache_clear()  # importing stream.runtime.app read the settings before these were set
    app = create_app(get_settings())
    assert app.conf.broker_session_timeout == 8.0 and app.conf.broker_heartbeat_interval == 2.0
    get_settings.cache_clear()
    env.setenv("STREAMREC_GROUP_HEARTBEAT_INTERVAL_S", "5")
    with pytest.raises(ConfigError, match="HEARTBEAT_INTERVAL_S must be at most half"):
        get_settings()


def test_every_index_field_is_a_setting_defaulting_to_index_config(env):
    import dataclasses
    import typing

    from index.config import DeviceChoice, IndexConfig, IndexKind
    from stream.settings import INDEX_PREFIX

    fields = {f.name for f in dataclasses.fields(IndexConfig)}
    settings = {n.removeprefix(INDEX_PREFIX) for n in Settings.model_fields if n.startswith(INDEX_PREFIX)}
    assert settings == fields
    assert get_settings().index_config() == IndexConfig()  # unset: IndexConfig's own defaults
    for name, literal in (("index_kind", IndexKind), ("index_device", DeviceChoice)):
        choices, none = typing.get_args(Settings.model_fields[name].annotation)  # Literal[...] | None
        assert typing.get_args(choices) == typing.get_args(literal) and none is type(None)


def test_readme_states_index_config_defaults():
    """The README's defaults of STREAMREC_INDEX_* are IndexConfig's (where they live)."""
    import dataclasses
    import re

    from index.config import IndexConfig
    from tests.helpers import REPO

    rows = dict(re.findall(r"^\| `STREAMREC_INDEX_([A-Z0-9_]+)` \| ([^|]*) \|", (REPO / "README.md").read_text(), re.M))
    for f in dataclasses.fields(IndexConfig):
        cell = rows[f.name.upper()].strip()
        if f.default is None:
            assert not cell.startswith("`"), f"{f.name}: {cell}"
        else:
            assert cell == f"`{f.default:g}`" if isinstance(f.default, float) else cell == f"`{f.default}`", f.name


def test_index_variables_reach_the_index_config(env):
    for name, value in {"KIND": "ivfpq", "DEVICE": "cpu", "HNSW_M": "16", "HNSW_EF_SEARCH": "64",
                        "IVF_NLIST": "256", "IVF_NPROBE": "8", "PQ_M": "16", "HNSW_COMPACT_RATIO": "1"}.items():
        env.setenv(f"STREAMREC_INDEX_{name}", value)
    config = get_settings().index_config()
    assert (config.kind, config.device, config.hnsw_m, config.hnsw_ef_search) == ("ivfpq", "cpu", 16, 64)
    assert (config.ivf_nlist, config.ivf_nprobe, config.pq_m, config.hnsw_compact_ratio) == (256, 8, 16, 1.0)
    assert config.pq_nbits == 8 and config.auto_flat_max == 50_000  # the others keep their defaults


@pytest.mark.parametrize("name,value", [("KIND", "annoy"), ("HNSW_M", "0"), ("IVF_NPROBE", "-1"),
                                        ("PQ_NBITS", "17"), ("HNSW_COMPACT_RATIO", "0"), ("IVF_NLIST", "many")])
def test_bad_index_setting_is_a_clear_config_error(env, name, value):
    env.setenv(f"STREAMREC_INDEX_{name}", value)
    with pytest.raises(ConfigError, match=f"index_{name.lower()}"):
        get_settings()


def test_reading_the_settings_loads_no_index():
    """``streamrec settings`` stays light: FAISS loads only when an index config is built."""
    import subprocess
    import sys

    from tests.helpers import REPO

    code = ("import sys; from stream.settings import Settings; s = Settings(); s.redacted(); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('index', 'faiss', 'torch')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_trainer_makes_the_automatic_choice_by_default(env):
    s = get_settings()
    assert (s.train_select, s.train_time_budget_s) == ("auto", 900.0)
    env.setenv("STREAMREC_TRAIN_SELECT", "fixed")
    env.setenv("STREAMREC_TRAIN_TIME_BUDGET_S", "60")
    get_settings.cache_clear()
    assert (get_settings().train_select, get_settings().train_time_budget_s) == ("fixed", 60.0)
    env.setenv("STREAMREC_TRAIN_SELECT", "best")
    get_settings.cache_clear()
    with pytest.raises(Exception, match="train_select"):
        get_settings()
