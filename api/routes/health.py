import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import StateDep
from api.schemas import Health
from kit.db import UNAVAILABLE_ERRORS
from kit.redis import REDIS_UNAVAILABLE_ERRORS

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    """The process is alive and serving. Checks nothing else, so restarts are not cascaded."""
    return Health(status="ok")


@router.get("/readyz", responses={503: {"model": Health, "description": "Not ready"}})
async def readyz(state: StateDep) -> JSONResponse:
    """Ready when Postgres and Redis both answer within their timeouts."""
    checks = {"postgres": "ok", "redis": "ok"}
    try:
        async with asyncio.timeout(state.settings.db_pool_acquire_timeout_s):
            await state.pool.fetchval("SELECT 1")
    except UNAVAILABLE_ERRORS as exc:
        checks["postgres"] = f"unavailable: {type(exc).__name__}"
    try:
        await state.redis.ping()
    except REDIS_UNAVAILABLE_ERRORS as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    body = Health(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
