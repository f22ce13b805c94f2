"""Typed configuration, read once from the environment (see README, "Configuration")."""

from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, PostgresDsn, RedisDsn, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    database_url: SecretStr = SecretStr("postgresql://orders:orders@127.0.0.1:5432/orders")
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    smtp_url: str = "smtp://127.0.0.1:1025"
    mail_from: str = "Orders <orders@example.com>"
    # The right-hand side of every Message-ID this service writes.
    message_id_domain: str = "orders.example.com"

    db_pool_min_size: int = Field(default=2, ge=0)
    db_pool_max_size: int = Field(default=10, ge=1)
    # How long a request waits for a pooled connection before it is answered 503.
    db_pool_acquire_timeout_s: float = Field(default=2.0, gt=0)
    db_connect_timeout_s: float = Field(default=5.0, gt=0)
    db_command_timeout_s: float = Field(default=10.0, gt=0)
    db_statement_timeout_ms: int = Field(default=5_000, gt=0)
    db_max_inactive_connection_lifetime_s: float = Field(default=300.0, ge=0)

    redis_timeout_s: float = Field(default=1.0, gt=0)
    # Connections each process may open to Redis (the cache, its pub/sub listener, the queue).
    redis_pool_max_size: int = Field(default=32, ge=2)
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    # SMTP connections each worker process keeps open and sends over, one message at a time each;
    # no more than WORKER_MAX_JOBS are ever open, and fewer make email jobs queue for one.
    smtp_max_connections: int = Field(default=20, ge=1)

    catalogue_cache_ttl_s: int = Field(default=60, gt=0)
    # The in-process tier in front of Redis (0 turns it off); also the longest a write waits for
    # other processes to drop the old value. The same value in every process.
    catalogue_local_ttl_s: float = Field(default=1.0, ge=0)
    # API keys are looked up in Postgres at most this often per process; also the revocation delay.
    auth_cache_ttl_s: float = Field(default=10.0, ge=0)

    slow_request_s: float = Field(default=0.5, gt=0)
    max_body_bytes: int = Field(default=64 * 1024, gt=0)

    # Stored Idempotency-Key responses are kept at least this long (a promise to clients: a retry
    # within a day is always recognised), then purged by the worker's cron job.
    idempotency_key_ttl_s: int = Field(default=24 * 3600, ge=24 * 3600)
    # Per API key and per API process (in memory, no Redis round trip): a steady rate and the
    # burst allowed on top of it. 0 turns the limit off.
    rate_limit_per_s: float = Field(default=10_000.0, ge=0)
    rate_limit_burst: int = Field(default=20_000, ge=1)

    queue_name: str = "orders:queue"
    # Outbox rows each relay claims at a time.
    outbox_batch_size: int = Field(default=200, ge=1)
    # Orders per job: claimed rows of one function go to the queue as jobs of up to this many
    # orders each, each job one reservation transaction or one round of emails (1: a job per
    # order, as before batching).
    job_batch_size: int = Field(default=100, ge=1)
    # After a claim that found rows, a relay waits this long before it claims again, so that
    # under load each claim collects many orders rather than the one or two committed since the
    # last; a relay that was idle hands over a new row at once.
    outbox_linger_s: float = Field(default=0.02, ge=0)
    outbox_sweep_interval_s: float = Field(default=2.0, gt=0)
    # A job handed over this long ago whose work is not done is handed over again, in case
    # Redis lost it; ARQ drops the copy if it still has the job or its result.
    outbox_redeliver_after_s: float = Field(default=60.0, gt=0)
    # Short on purpose: ARQ holds a job's in-progress lock for the longest timeout plus 10 s,
    # which is how long a job of a killed worker waits before it runs again.
    job_timeout_s: int = Field(default=10, ge=1)
    job_max_tries: int = Field(default=8, ge=1)
    # Retry n waits a random time in [ceiling/4, ceiling], ceiling = min(cap, base * 2**(n-1)).
    job_retry_backoff_s: float = Field(default=1.0, gt=0)
    job_retry_backoff_cap_s: float = Field(default=60.0, gt=0)
    worker_max_jobs: int = Field(default=20, ge=1)
    worker_shutdown_grace_s: int = Field(default=20, ge=0)
    # Each worker refreshes its own heartbeat key this often; the key expires after the TTL, so
    # `ordersctl workers` stops listing a killed worker within the TTL.
    worker_heartbeat_interval_s: float = Field(default=5.0, gt=0)
    worker_heartbeat_ttl_s: int = Field(default=15, ge=1)
    # The worker's Prometheus endpoint (`/metrics`); 0 turns it off.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"

    # Webhooks (docs/webhooks.md). `true` allows plain http and private, loopback and link-local
    # addresses (development and tests; `make run` sets it); never in production.
    webhook_allow_private_networks: bool = False
    # A delivery is retried with exponential backoff and jitter (as JOB_RETRY_BACKOFF_S is) for
    # this long after its event, then recorded dead.
    webhook_max_age_s: float = Field(default=3 * 24 * 3600, gt=0)
    webhook_retry_backoff_s: float = Field(default=5.0, gt=0)
    webhook_retry_backoff_cap_s: float = Field(default=3 * 3600, gt=0)
    webhook_connect_timeout_s: float = Field(default=3.0, gt=0)
    # The whole request, from connecting to the last byte of the answer kept. Above
    # JOB_TIMEOUT_S it lengthens ARQ's in-progress lock, so how long a killed worker's jobs wait.
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # Requests in flight per endpoint, and all together, in each worker process; the second
    # also caps the webhook jobs a worker runs at once (a job over it gives its slot back at
    # once and runs again shortly), so webhooks hold at most that many of its WORKER_MAX_JOBS
    # slots however their receivers behave.
    webhook_max_in_flight_per_endpoint: int = Field(default=2, ge=1)
    webhook_max_in_flight: int = Field(default=8, ge=1)
    # A delivery that is due this long without having been tried is handed to the queue again
    # (Redis lost it, or the retry could not be queued).
    webhook_redeliver_after_s: float = Field(default=60.0, gt=0)
    # Events (and their deliveries' log) are kept this long, then purged by the worker's cron
    # job; GET /v1/events reaches back this far. Keep it above WEBHOOK_MAX_AGE_S.
    event_retention_s: int = Field(default=30 * 24 * 3600, ge=3600)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    # Bounded tables and the cluster-wide rate limit (issue 13; docs/operations.md#retention).
    # Delivered outbox rows are kept this long, so that `ordersctl order ID` shows an order's
    # jobs; rows of orders whose work is not done are kept whatever their age (the relay hands
    # them over again from there).
    outbox_retention_s: int = Field(default=7 * 24 * 3600, ge=1)
    # Dead jobs an operator has retried are kept this long after the retry; dead jobs nobody
    # retried are kept until someone does (a warning counts those older than this).
    dead_job_retention_s: int = Field(default=30 * 24 * 3600, ge=60)
    # Rows each purge statement deletes, each batch its own short transaction.
    purge_batch_size: int = Field(default=1_000, ge=1)
    # A purge batch waits no longer than this for a table lock; it stops until the next run.
    purge_lock_timeout_ms: int = Field(default=100, gt=0)
    # After each full batch a purge pauses this many times as long as the batch took: it keeps
    # Postgres busy at most 1 / (1 + factor) of the run, and gives way further when orders keep
    # Postgres busy (batches take longer, so do the pauses). 0 deletes flat out.
    purge_pause_factor: float = Field(default=3.0, ge=0)
    # `cluster`: one limit per API key across every API process, kept in Redis (GCRA in one Lua
    # script, one round trip a request); `process`: each API process limits a key alone, in
    # memory. While Redis does not answer within RATE_LIMIT_REDIS_TIMEOUT_S the cluster limit
    # falls back to the process one (docs/decisions/0035-cluster-rate-limit.md).
    rate_limit_scope: Literal["cluster", "process"] = "process"
    rate_limit_redis_timeout_s: float = Field(default=0.05, gt=0)

    # Tracing (kit/tracing.py, docs/tracing.md): the standard OpenTelemetry variables that decide
    # whether it is on. It is off unless an OTLP endpoint is set or OTEL_TRACES_EXPORTER names an
    # exporter; OTEL_SDK_DISABLED=true turns it off whatever else is set. The SDK reads the rest
    # itself (OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_HEADERS, ...).
    otel_sdk_disabled: bool = False
    # Comma-separated: `otlp` (HTTP/protobuf), `console`, or `none`.
    otel_traces_exporter: str = ""
    otel_exporter_otlp_endpoint: str = ""
    otel_exporter_otlp_traces_endpoint: str = ""
    # Only HTTP/protobuf is installed (the specification's default); gRPC is refused at start.
    otel_exporter_otlp_protocol: Literal["http/protobuf"] = "http/protobuf"
    otel_exporter_otlp_traces_protocol: Literal["http/protobuf"] = "http/protobuf"

    # PgBouncer and Redis Sentinel (docs/deployment.md, decisions 0037 and 0038).
    # `transaction` when DATABASE_URL is a PgBouncer in transaction pooling: no named prepared
    # statements (they do not survive a change of server connection) and no session settings at
    # connect (PgBouncer refuses them; the server role carries the timeouts instead).
    database_pool_mode: Literal["session", "transaction"] = "session"
    # The relay's LISTEN needs a session of its own on Postgres itself, not on a transaction
    # pooler: unset, it uses DATABASE_URL.
    database_listen_url: SecretStr | None = None
    # Comma-separated host:port of Redis Sentinels; empty, REDIS_URL's host is Redis itself.
    # With sentinels, REDIS_URL still gives the database number and the data nodes' password.
    redis_sentinels: str = ""
    redis_sentinel_master: str = "orders"
    redis_sentinel_password: SecretStr | None = None

    # The operator console (console/, docs/console.md). Off: /console is not routed at all.
    console_enabled: bool = True
    # A console session ends this long after sign-in; signing in again starts a new one.
    console_session_ttl_s: int = Field(default=8 * 3600, ge=60)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr) -> SecretStr:
        PostgresDsn(value.get_secret_value())
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr) -> SecretStr:
        RedisDsn(value.get_secret_value())
        return value

    @field_validator("database_listen_url")
    @classmethod
    def _listen_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            PostgresDsn(value.get_secret_value())
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels(cls, value: str) -> str:
        _parse_hosts(value)
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://host:port")
        return value

    @field_validator("otel_traces_exporter")
    @classmethod
    def _known_exporters(cls, value: str) -> str:
        unknown = set(otel_exporters(value)) - {"otlp", "console", "none"}
        if unknown:
            raise ValueError(f"OTEL_TRACES_EXPORTER: no exporter {', '.join(sorted(unknown))}")
        return value

    @model_validator(mode="after")
    def _events_outlive_their_deliveries(self) -> "Settings":
        # A delivery still being retried needs its event.
        if self.event_retention_s < self.webhook_max_age_s:
            raise ValueError("EVENT_RETENTION_S must be at least WEBHOOK_MAX_AGE_S")
        return self

    @property
    def tracing_enabled(self) -> bool:
        if self.otel_sdk_disabled:
            return False
        exporters = otel_exporters(self.otel_traces_exporter)
        if exporters:
            return exporters != ["none"]
        return bool(self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)

    @property
    def listen_url(self) -> str:
        """Where the relay LISTENs: a direct session on Postgres."""
        return (self.database_listen_url or self.database_url).get_secret_value()

    @property
    def redis_sentinel_hosts(self) -> list[tuple[str, int]]:
        return _parse_hosts(self.redis_sentinels)

    @property
    def smtp_host(self) -> str:
        return urlsplit(self.smtp_url).hostname or "127.0.0.1"

    @property
    def smtp_port(self) -> int:
        parts = urlsplit(self.smtp_url)
        return parts.port or (465 if parts.scheme == "smtps" else 25)


def otel_exporters(value: str) -> list[str]:
    """The names in an OTEL_TRACES_EXPORTER value (`otlp,console`)."""
    return [name.strip() for name in value.split(",") if name.strip()]


def _parse_hosts(value: str) -> list[tuple[str, int]]:
    hosts: list[tuple[str, int]] = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"REDIS_SENTINELS must be host:port,host:port; got {item!r}")
        hosts.append((host.strip("[]"), int(port)))
    return hosts


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
