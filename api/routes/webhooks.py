from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api.deps import ClientDep, StateDep
from api.problems import COMMON_PROBLEMS, NOT_FOUND
from shop.fields import MAX_ID
from shop.webhooks import service as webhooks
from shop.webhooks.schemas import (
    WebhookAttemptPage,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointList,
    WebhookEndpointPublic,
    WebhookSecretRotated,
)

router = APIRouter(
    prefix="/v1/webhook-endpoints",
    tags=["webhooks"],
    responses=COMMON_PROBLEMS,
)

EndpointId = Annotated[int, Path(ge=1, le=MAX_ID, description="The webhook endpoint's id")]


@router.post(
    "",
    status_code=201,
    response_model=WebhookEndpointCreated,
    response_description="The endpoint, with the secret that signs its deliveries",
)
async def create_webhook_endpoint(
    body: WebhookEndpointCreate, state: StateDep, client: ClientDep
) -> WebhookEndpointCreated:
    """Register a URL to hear about your orders: `order.created`, `order.confirmed`,
    `order.rejected`, `order.cancelled`.

    Each event is POSTed as JSON, `{"id": "evt_...", "type": ..., "timestamp": ..., "data":
    <the order as GET /v1/orders/{id} returns it>}`, signed as Standard Webhooks 1.0 says:
    `webhook-id` (the event's id, the same on every retry), `webhook-timestamp` (Unix
    seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`,
    keyed with the secret's base64-decoded bytes after `whsec_`). The secret is shown only
    here and on rotation. Any 2xx answer within 10 s is a delivery; anything else is retried
    with exponential backoff for up to 3 days. Deliveries are at least once, in no promised
    order: use the event id to drop copies.

    The URL must be https on a public address (checked now, and again before every request
    against the address the host resolves to then); otherwise 422.
    """
    return await webhooks.create_endpoint(state.pool, state.settings, client, body)


@router.get("")
async def list_webhook_endpoints(state: StateDep, client: ClientDep) -> WebhookEndpointList:
    """Your webhook endpoints, oldest first (without their secrets)."""
    return await webhooks.list_endpoints(state.pool, state.settings, client)


@router.get("/{endpoint_id}", responses=NOT_FOUND)
async def get_webhook_endpoint(
    endpoint_id: EndpointId, state: StateDep, client: ClientDep
) -> WebhookEndpointPublic:
    """One of your webhook endpoints (without its secret); `disabled_at` and
    `disabled_reason` say whether, and why, it no longer gets events."""
    return await webhooks.get_endpoint(state.pool, state.settings, client, endpoint_id)


@router.delete(
    "/{endpoint_id}",
    status_code=204,
    response_class=Response,
    responses=NOT_FOUND,
    response_description="Deleted",
)
async def delete_webhook_endpoint(
    endpoint_id: EndpointId, state: StateDep, client: ClientDep
) -> Response:
    """Delete one of your webhook endpoints; deliveries to it still pending are dropped."""
    await webhooks.delete_endpoint(state.pool, state.settings, client, endpoint_id)
    return Response(status_code=204)


@router.post("/{endpoint_id}/enable", responses=NOT_FOUND)
async def enable_webhook_endpoint(
    endpoint_id: EndpointId, state: StateDep, client: ClientDep
) -> WebhookEndpointPublic:
    """Send events to an endpoint again after it was disabled (`disabled_at` is cleared).

    Events written while it was disabled are not sent to it: read them from `GET /v1/events`
    with the cursor of the last one it received, or redeliver them one by one. The URL is
    checked again as at registration (422). Enabling an endpoint that is not disabled changes
    nothing.
    """
    return await webhooks.enable_endpoint(state.pool, state.settings, client, endpoint_id)


@router.post("/{endpoint_id}/rotate-secret", responses=NOT_FOUND)
async def rotate_webhook_secret(
    endpoint_id: EndpointId, state: StateDep, client: ClientDep
) -> WebhookSecretRotated:
    """Replace the endpoint's signing secret.

    For 24 hours each delivery carries two signatures in `webhook-signature`, separated by a
    space: one by the new secret and one by the previous, so that receivers can switch over
    without dropping a delivery. A second rotation within that time drops the oldest secret.
    """
    return await webhooks.rotate_secret(state.pool, state.settings, client, endpoint_id)


@router.get("/{endpoint_id}/deliveries", responses=NOT_FOUND)
async def list_webhook_deliveries(
    endpoint_id: EndpointId,
    state: StateDep,
    client: ClientDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None, Query(max_length=64, description="`next_cursor` of the previous page")
    ] = None,
) -> WebhookAttemptPage:
    """Every request made to the endpoint, newest first: when, the answer's status code, how
    long it took, the error when there was no answer, and when the delivery is tried next."""
    return await webhooks.list_attempts(
        state.pool, state.settings, client, endpoint_id, limit=limit, cursor=cursor
    )
