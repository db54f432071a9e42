"""One typed, frozen settings object, read from ``STREAMREC_*`` environment variables.

Every process (worker, trainer, producer, CLI) builds it once at start-up with
:func:`get_settings`; secrets are ``SecretStr`` and never appear in ``repr``,
logs or :meth:`Settings.redacted`.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (BaseSettings, NoDecode, PydanticBaseSettingsSource, SecretsSettingsSource,
                               SettingsConfigDict)

from stream.errors import ConfigError

if TYPE_CHECKING:
    from index.config import IndexConfig

log = logging.getLogger(__name__)

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
INDEX_PREFIX = "index_"  # Settings.index_<field> is IndexConfig.<field>
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
# RFC 6750's b64token, so the token travels in an Authorization header as it is.
API_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{16,4096}=*")
SECRETS_FOLDER = Path("/run/secrets")  # where Docker and Kubernetes mount secrets


def secrets_folder(configured: str | Path | None) -> Path | None:
    """The folder of secret files: ``STREAMREC_SECRETS_DIR`` when set (empty: none), else
    ``/run/secrets`` when it exists, else none.

    A file there named like a setting's variable, in either case (``streamrec_kafka_sasl_password``),
    holds that setting's value (stripped of surrounding white space); a variable that is set wins.
    """
    if configured is not None:
        return Path(configured) if str(configured) else None
    return SECRETS_FOLDER if SECRETS_FOLDER.is_dir() else None


class Settings(BaseSettings):
    """streamrec's settings; each field is read from ``STREAMREC_<FIELD NAME>``."""

    # hide_input_in_errors: a validation error would otherwise print the values it saw, the
    # SASL password among them (a model validator's error shows every input).
    model_config = SettingsConfigDict(env_prefix="STREAMREC_", frozen=True, extra="ignore",
                                      hide_input_in_errors=True)

    # --- Kafka connection -------------------------------------------------
    kafka_bootstrap: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("127.0.0.1:9092",),
        description="Bootstrap servers, comma-separated host:port list.",
    )
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle (PEM) to verify the brokers.")
    kafka_ssl_certfile: Path | None = Field(default=None, description="Client certificate (PEM) for mutual TLS.")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="Client private key (PEM) for mutual TLS.")
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = True
    kafka_client_id: str = "streamrec"

    # --- Topics -------------------------------------------------------------
    topic_prefix: str = Field(default="", description="Prepended to every topic name (namespaces, tests).")
    topic_partitions: int = Field(default=8, ge=1, le=10_000, description="Partitions of the keyed topics.")
    topic_replication: int = Field(default=1, ge=1, le=10)
    topic_max_message_bytes: int = Field(
        default=1_048_576, ge=65_536, le=100 * 1024**2,
        description="max.message.bytes of the project's topics; no output the worker or the producer "
                    "client sends is larger.")
    dead_letter_max_bytes: int = Field(
        default=16 * 1024, ge=0, le=512 * 1024,
        description="Prefix of a rejected record's key and value kept in its dead letter (with their "
                    "length and SHA-256).")

    # --- Worker ---------------------------------------------------------------
    app_id: str = Field(default="streamrec", description="Faust app id: consumer group and table namespace.")
    data_dir: Path = Field(default=Path("var/streamrec"), description="Local state: RocksDB tables, artifacts.")
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    group_session_timeout_s: float = Field(
        default=10.0, ge=6.0, le=300.0,
        description="How long the group waits for a silent worker before moving its partitions "
                    "(Faust's default, 60 s, stalls a crashed worker's users for a minute).")
    group_heartbeat_interval_s: float = Field(default=3.0, gt=0.0, le=100.0,
                                              description="Worker heartbeat to the group coordinator.")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    web_bind: str | None = Field(default=None, description="Address the HTTP server binds (default: web_host).")
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token the worker's HTTP API requires on every endpoint but /healthz (and /metrics "
                    "unless metrics_public); unset: no token.")
    metrics_public: bool = Field(default=False, description="Serve /metrics without the API token.")
    secrets_dir: Path | None = Field(
        default=None,
        description="Folder of secret files, one per setting, named like its variable (streamrec_api_token); "
                    "unset: /run/secrets when it exists. Variables win over files.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    rocksdb_block_cache_bytes: int = Field(
        default=128 * 1024**2, ge=1024**2,
        description="RocksDB block cache shared by all of the worker's table partitions (Faust's default is "
                    "2 GiB for each partition).")
    rocksdb_write_buffer_bytes: int = Field(default=16 * 1024**2, ge=1024**2,
                                            description="RocksDB memtable size of each table partition.")
    rocksdb_memtable_budget_bytes: int = Field(
        default=128 * 1024**2, ge=1024**2,
        description="Memtable memory of all of the worker's table partitions together (a RocksDB write-buffer "
                    "manager flushes the largest memtables when it is reached).")

    # --- Recommendations ------------------------------------------------------
    artifacts_dir: Path = Field(default=Path("var/artifacts"), description="Trained model and index versions.")
    artifact_key: SecretStr | None = Field(
        default=None, min_length=16,
        description="HMAC-SHA256 key: the trainer signs each version's manifest, the workers and the trainer "
                    "refuse unsigned or mis-signed ones (unset: nothing signed or checked, for local runs).")
    top_k: int = Field(default=10, ge=1, le=100, description="Items per published recommendation.")
    max_k: int = Field(default=100, ge=1, le=1000, description="Largest k the HTTP API accepts.")
    max_history: int = Field(default=200, ge=1, le=10_000, description="Events kept per user (for exclusion).")
    # A batch never waits to fill, so this only bounds batches of a worker behind its input:
    # 2,000 doubled the 200k-event backlog rate over 500 (fewer recommendations per event,
    # per-batch costs shared) at ~150 ms of event loop per batch.
    batch_max_events: int = Field(default=2000, ge=1, le=100_000,
                                  description="Micro-batch size limit (records per fetch; a batch never waits to fill).")
    batch_slice_ms: float = Field(
        default=20.0, ge=1.0, le=10_000.0,
        description="About the longest the worker processes a batch without letting HTTP requests and fetches "
                    "in: a larger batch is processed in slices sized from the measured cost per event.")
    consumer_fetch_max_wait_ms: int = Field(
        default=50, ge=1, le=10_000,
        description="Longest wait of the worker's fetches at the broker for records to arrive (Faust "
                    "fixes 1,500 ms): it bounds how long an idle partition's fetch holds back the events "
                    "partitions (stream/runtime/README.md).")
    producer_linger_ms: int = Field(default=1, ge=0, le=10_000,
                                    description="Producer wait to batch records before sending.")
    train_select: Literal["auto", "fixed"] = Field(
        default="auto", description="auto: the trainer trains its candidate towers and keeps the best on "
                                    "validation; fixed: it trains exactly the given settings.")
    train_time_budget_s: float = Field(default=900.0, gt=0, le=7 * 86400,
                                       description="Seconds the trainer may spend training candidates (auto).")
    # 5,000,000 events train in about 1.2 GiB (PEAK_BYTES_PER_EVENT in stream/trainer/snapshot.py),
    # which leaves most of a 2-core 24 GiB machine to the broker, a worker and the model; 90 days
    # keep a season of behaviour and drop what tastes have moved on from.
    train_window_events: int | None = Field(
        default=5_000_000, ge=1,
        description="Most events the trainer reads: the newest, from each partition's end backwards in "
                    "proportion to its size (none: no bound but memory).")
    train_window_days: float | None = Field(
        default=90.0, gt=0,
        description="Oldest events the trainer reads, in days before now by their Kafka timestamps "
                    "(none: no bound).")
    trainer_host: str = Field(default="127.0.0.1", description="Trainer's /metrics and /healthz bind address.")
    trainer_port: int = Field(default=6070, ge=1, le=65535, description="Trainer's /metrics and /healthz port.")
    trending_half_life_s: float = Field(default=3600.0, gt=0,
                                        description="Half-life of the trending counts used for cold start.")
    trending_publish_interval_s: float = Field(
        default=5.0, gt=0, le=3600,
        description="Seconds between a worker's publications of its partitions' trending counts to the trending "
                    "topic, which every worker adds up: how far behind the other workers' events its trend is.")

    # --- Dashboard (streamrec dashboard) -------------------------------------------
    dashboard_host: str = Field(default="127.0.0.1", description="Address the dashboard binds.")
    dashboard_port: int = Field(default=6080, ge=1, le=65535, description="The dashboard's port.")
    dashboard_workers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("http://127.0.0.1:6066",),
        description="The workers' HTTP URLs the dashboard reads, comma-separated (any one answers for "
                    "every user; each one's /metrics adds up to the overview).")
    dashboard_trainer_url: str | None = Field(
        default=None, description="The trainer's HTTP URL, for its runs by result (unset: trainer_host:trainer_port).")
    dashboard_scrape_interval_s: float = Field(
        default=2.0, ge=0.2, le=3600, description="Seconds between the dashboard's reads of every worker's /metrics.")

    # --- Vector index (index.IndexConfig) ----------------------------------------
    # One setting per IndexConfig field, named index_<field>. Unset (None) keeps
    # IndexConfig's own default, the one source of these defaults; importing index
    # here would load FAISS for every command, so the ranges below are checked at
    # start-up and IndexConfig checks the rest when index_config() builds it.
    index_kind: Literal["auto", "flat", "hnsw", "ivf", "ivfpq"] | None = Field(
        default=None, description="Index type; auto picks by catalogue size (flat, then hnsw, ivf, ivfpq).")
    index_device: Literal["auto", "cpu", "gpu"] | None = Field(
        default=None, description="auto uses a GPU when FAISS sees one; gpu falls back to the CPU with a warning.")
    index_auto_flat_max: int | None = Field(default=None, ge=0,
                                            description="With kind auto: catalogues up to this size use exact search.")
    index_auto_hnsw_max: int | None = Field(default=None, ge=0,
                                            description="With kind auto: larger ones up to this size use HNSW, "
                                                        "above it IVF.")
    index_auto_ivfpq_min: int | None = Field(default=None, ge=0,
                                             description="With kind auto: catalogues from this size use IVF-PQ.")
    index_hnsw_m: int | None = Field(default=None, ge=1,
                                     description="HNSW graph degree M (about 8*M bytes per item).")
    index_hnsw_ef_construction: int | None = Field(default=None, ge=1,
                                                   description="HNSW candidate list size while inserting.")
    index_hnsw_ef_search: int | None = Field(default=None, ge=1,
                                             description="HNSW candidate list size while searching (efSearch; "
                                                         "raised to k when smaller; unset: max(64, 2k) "
                                                         "for a search of k).")
    index_hnsw_compact_ratio: float | None = Field(default=None, gt=0.0, le=1.0,
                                                   description="Rebuild the HNSW graph once this share of its nodes "
                                                               "are tombstones (1 disables it).")
    index_ivf_nlist: int | None = Field(default=None, ge=1,
                                        description="IVF lists (unset: a power of two near 4*sqrt(n)).")
    index_ivf_nprobe: int | None = Field(default=None, ge=1, description="IVF lists visited per query.")
    index_ivf_train_per_list: int | None = Field(default=None, ge=1,
                                                 description="Training points per IVF list for the coarse k-means.")
    index_pq_m: int | None = Field(default=None, ge=1,
                                   description="PQ code size: sub-quantisers, bytes per item at 8 bits (unset: one "
                                               "per dimension); must divide the dimension.")
    index_pq_nbits: int | None = Field(default=None, ge=1, le=16, description="Bits per PQ code.")
    index_pq_train_size: int | None = Field(default=None, ge=1, description="Training points for the PQ codebooks.")
    index_pq_niter: int | None = Field(default=None, ge=1, description="k-means iterations for the PQ codebooks.")
    index_exclude_overfetch_max: int | None = Field(
        default=None, ge=0, description="Exclusion sets up to this size are filtered from k + |exclude| results; "
                                        "larger ones use a FAISS id selector.")
    index_seed: int | None = Field(default=None, ge=0, description="Seed of the index's training samples and k-means.")

    @model_validator(mode="after")
    def _heartbeat_within_session(self) -> Settings:
        if self.group_heartbeat_interval_s * 2 > self.group_session_timeout_s:
            raise ValueError("STREAMREC_GROUP_HEARTBEAT_INTERVAL_S must be at most half of "
                             "STREAMREC_GROUP_SESSION_TIMEOUT_S")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then variables, then secret files (:func:`secrets_folder`)."""
        init_kwargs = getattr(init_settings, "init_kwargs", {})
        folder = secrets_folder(init_kwargs.get("secrets_dir", os.environ.get("STREAMREC_SECRETS_DIR")))
        # A missing folder is the secrets_dir validator's to report: the source would only warn.
        files = SecretsSettingsSource(settings_cls, secrets_dir=folder if folder and folder.is_dir() else None)
        return init_settings, env_settings, dotenv_settings, files

    @field_validator("secrets_dir", mode="before")
    @classmethod
    def _empty_secrets_dir_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("train_window_events", "train_window_days", mode="before")
    @classmethod
    def _none_lifts_the_bound(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value

    @field_validator("secrets_dir")
    @classmethod
    def _secrets_dir_is_a_folder(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"STREAMREC_SECRETS_DIR={value} is not a folder")
        return value

    @field_validator("api_token")
    @classmethod
    def _token_fits_a_header(cls, value: SecretStr | None) -> SecretStr | None:
        # The message must not quote the value: it is a secret.
        if value is not None and not API_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("STREAMREC_API_TOKEN must be 16 to 4096 characters of A-Z a-z 0-9 - . _ ~ + / "
                             "(a bearer token, RFC 6750), optionally ending in =")
        return value

    @field_validator("kafka_bootstrap", mode="before")
    @classmethod
    def _split_servers(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.replace(";", ",").split(",")]
        if isinstance(value, (list, tuple)):
            servers = tuple(str(v).strip() for v in value if str(v).strip())
            for server in servers:
                host, sep, port = server.removeprefix("kafka://").rpartition(":")
                if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ValueError(f"bootstrap server {server!r} is not host:port")
            if not servers:
                raise ValueError("at least one bootstrap server is required")
            return tuple(s.removeprefix("kafka://") for s in servers)
        return value

    @field_validator("dashboard_workers", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, (list, tuple)):
            urls = tuple(str(v).strip().rstrip("/") for v in value if str(v).strip())
            for url in urls:
                if not re.fullmatch(r"https?://[^/\s?#]+", url):
                    raise ValueError(f"worker URL {url!r} is not http(s)://host:port")
            if not urls:
                raise ValueError("at least one worker URL is required")
            return urls
        return value

    @property
    def trainer_url(self) -> str:
        """The trainer's HTTP URL, as the dashboard reaches it."""
        return (self.dashboard_trainer_url or f"http://{self.trainer_host}:{self.trainer_port}").rstrip("/")

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        sasl = self.kafka_security_protocol.startswith("SASL")
        if sasl and (not self.kafka_sasl_username or self.kafka_sasl_password is None):
            raise ValueError(
                f"security protocol {self.kafka_security_protocol} needs "
                "STREAMREC_KAFKA_SASL_USERNAME and STREAMREC_KAFKA_SASL_PASSWORD"
            )
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("STREAMREC_KAFKA_SSL_CERTFILE and STREAMREC_KAFKA_SSL_KEYFILE go together")
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"STREAMREC_{name.upper()}={path} is not a readable file")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.kafka_security_protocol.startswith("SASL")

    def index_config(self) -> IndexConfig:
        """The vector index's settings: each ``STREAMREC_INDEX_<FIELD>`` set, IndexConfig's default otherwise.

        Used for every index the process builds (the trainer's artifact index, the
        worker's catalogue and users indexes). Raises :class:`ConfigError` when
        IndexConfig refuses the combination.
        """
        from index.config import IndexConfig
        from index.errors import ConfigError as IndexConfigError

        values = {name.removeprefix(INDEX_PREFIX): value for name in type(self).model_fields
                  if name.startswith(INDEX_PREFIX) and (value := getattr(self, name)) is not None}
        try:
            return IndexConfig(**values)
        except IndexConfigError as e:
            raise ConfigError(f"invalid STREAMREC_INDEX_* settings: {e}") from e

    def topic(self, name: str) -> str:
        """The full name of one of the project's topics (``events``, ``items``, ...)."""
        return f"{self.topic_prefix}{name}"

    def secret_values(self) -> tuple[str, ...]:
        """The plain values of the secrets that are set (for masking them in logs)."""
        return tuple(value.get_secret_value() for value in self.model_dump().values()
                     if isinstance(value, SecretStr) and value.get_secret_value())

    def redacted(self) -> dict[str, object]:
        """The settings as a dict fit for logs: secrets are masked."""
        out: dict[str, object] = {}
        for key, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = "**********"
            elif isinstance(value, Path):
                value = str(value)
            out[key] = value
        return out


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment and validated.

    Raises :class:`ConfigError` with every problem listed when a variable is invalid.
    """
    try:
        settings = Settings()
    except ValueError as e:
        raise ConfigError(f"invalid STREAMREC_* settings: {e}") from e
    log.debug("settings loaded %s", settings.redacted())
    return settings
