from fastapi import APIRouter, Response

from api.deps import StateDep
from kit import metrics
from ops.metrics import system_sample

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(state: StateDep) -> Response:
    """Prometheus text: this process's (or, in multiprocess mode, every API process's) request,
    pool and cache metrics, then queue depth and outbox lag read at scrape time."""
    metrics.record_pool(state.pool, "api")
    sample = await system_sample(state.pool, state.redis, state.settings)
    return Response(metrics.exposition(sample), media_type=metrics.CONTENT_TYPE)
