"""Fixtures every test directory can ask for by name."""

from tests.services import (
    clean_state,
    mail_sink,
    pg_service,
    pgbouncer,
    redis_service,
    service_stack,
)

__all__ = ["clean_state", "mail_sink", "pg_service", "pgbouncer", "redis_service", "service_stack"]

from tests.app_fixtures import (
    admin_key,
    api,
    app,
    arq_redis,
    client_key,
    db,
    jobs,
    limited_api,
    make_product,
    other_client_key,
    settings,
    worker_context,
)
from tests.processes import spawn_api, spawn_worker
from tests.webhook_fixtures import hook_api

__all__ += [
    "admin_key",
    "api",
    "app",
    "arq_redis",
    "client_key",
    "db",
    "hook_api",
    "jobs",
    "limited_api",
    "make_product",
    "other_client_key",
    "settings",
    "spawn_api",
    "spawn_worker",
    "worker_context",
]
