"""The settings for PgBouncer and Redis Sentinel (kit/settings.py)."""

import pytest
from pydantic import SecretStr, ValidationError

from kit.settings import Settings


def test_sentinels_are_read_as_host_port_pairs() -> None:
    settings = Settings(redis_sentinels="10.0.0.1:26379, sentinel-b:26380,[::1]:26381")

    assert settings.redis_sentinel_hosts == [
        ("10.0.0.1", 26379),
        ("sentinel-b", 26380),
        ("::1", 26381),
    ]
    assert Settings().redis_sentinel_hosts == []


@pytest.mark.parametrize("value", ["sentinel-a", "sentinel-a:", ":26379", "sentinel-a:port"])
def test_a_sentinel_without_a_port_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="REDIS_SENTINELS"):
        Settings(redis_sentinels=value)


def test_the_relay_listens_on_the_database_url_unless_told_otherwise() -> None:
    pooled = "postgresql://orders:orders@pgbouncer:6432/orders"
    direct = "postgresql://orders:orders@postgres:5432/orders"

    assert Settings(database_url=SecretStr(pooled)).listen_url == pooled
    assert (
        Settings(database_url=SecretStr(pooled), database_listen_url=SecretStr(direct)).listen_url
        == direct
    )
