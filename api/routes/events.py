from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import ClientDep, StateDep
from api.problems import COMMON_PROBLEMS, NOT_FOUND
from shop.models import WebhookEventType
from shop.webhooks import service as webhooks
from shop.webhooks.schemas import WebhookEventPage, WebhookRedelivery

router = APIRouter(prefix="/v1/events", tags=["webhooks"], responses=COMMON_PROBLEMS)

EVENT_ID_PATTERN = r"^evt_[0-9a-f]{32}$"
EventId = Annotated[str, Path(pattern=EVENT_ID_PATTERN, description="The event's id, `evt_...`")]


@router.get("")
async def list_events(
    state: StateDep,
    client: ClientDep,
    event_type: Annotated[
        WebhookEventType | None, Query(alias="type", description="Only events of this type")
    ] = None,
    after: Annotated[
        str | None,
        Query(pattern=EVENT_ID_PATTERN, description="Only events after this one (its id)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> WebhookEventPage:
    """Your events, oldest first: catch up after an outage by asking again with `after` = the
    id of the last event you handled, until `has_more` is false. The same bodies the webhooks
    deliver; events are kept 30 days (`EVENT_RETENTION_S`)."""
    return await webhooks.list_events(
        state.pool, state.settings, client, event_type=event_type, after=after, limit=limit
    )


@router.post("/{event_id}/redeliver", status_code=202, responses=NOT_FOUND)
async def redeliver_event(
    event_id: EventId, state: StateDep, client: ClientDep
) -> WebhookRedelivery:
    """Send one of your events again to each of your endpoints that takes its type, with the
    same `webhook-id`, as new deliveries (with their own tries and log entries)."""
    answer = await webhooks.redeliver_event(state.pool, state.settings, client, event_id)
    state.relay_waker.poke()
    return answer
