"""The API process keeps its start-up heap out of the garbage collector's full collections."""

import gc
from collections.abc import Callable

import pytest
from fastapi import FastAPI

from tests.processes import ApiProcess, Server

# The framework, the app and its schemas: tens of thousands of objects, never scanned again.
FROZEN_AT_LEAST = 20_000


def test_the_objects_alive_after_start_up_are_frozen(app: FastAPI) -> None:
    assert app.state.orders is not None  # started
    assert gc.get_freeze_count() > FROZEN_AT_LEAST


@pytest.mark.slow
@pytest.mark.usefixtures("pg_service", "redis_service")
@pytest.mark.parametrize("server", Server)
async def test_each_server_runs_the_start_up_that_freezes_the_heap(
    server: Server, spawn_api: Callable[..., ApiProcess]
) -> None:
    api = spawn_api(server=server)
    await api.wait_until_ready()

    [started] = [event for event in api.log_events() if event["event"] == "api_started"]
    assert started["frozen_objects"] > FROZEN_AT_LEAST
