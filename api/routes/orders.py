from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from api.deps import ClientDep, IdempotencyKeyDep, StateDep, app_state, request_id_of
from api.problems import CANCEL_CONFLICT, COMMON_PROBLEMS, IN_PROGRESS, NOT_FOUND
from shop.fields import MAX_ID
from shop.models import OrderStatus
from shop.orders import service as orders
from shop.orders.idempotency import StoredResponse
from shop.orders.schemas import OrderCreate, OrderPage, OrderPublic

router = APIRouter(
    prefix="/v1/orders",
    tags=["orders"],
    responses=COMMON_PROBLEMS,
)

OrderId = Annotated[int, Path(ge=1, le=MAX_ID, description="The order's id")]


@router.post(
    "",
    status_code=201,
    response_model=OrderPublic,
    response_description="The order, accepted as pending",
    responses=IN_PROGRESS,
)
async def create_order(
    body: OrderCreate,
    client: ClientDep,
    idempotency_key: IdempotencyKeyDep,
    request: Request,
    response: Response,
) -> OrderPublic | Response:
    """Place an order. Prices come from the catalogue; stock is reserved asynchronously.

    The order is stored with its inventory job in one transaction, so an accepted order is never
    lost, even while the queue is unreachable. With an `Idempotency-Key`, a retry gets the first
    response again and places no second order.
    """
    # The state and request id straight from the request: the hottest write route resolves
    # only the dependency nodes it must (each costs CPU on every request).
    state = app_state(request)
    request_id = request_id_of(request)
    if idempotency_key is not None:
        stored = await orders.place_order_once(
            state.pool,
            state.settings,
            state.order_writes,
            client,
            body,
            request_id,
            idempotency_key,
        )
        state.relay_waker.poke()
        return _stored(stored)
    order = await orders.place_order(state.pool, state.settings, client, body, request_id)
    state.relay_waker.poke()
    response.headers["Location"] = orders.order_location(order.id)
    return order


@router.get("", responses=NOT_FOUND)
async def list_orders(
    state: StateDep,
    client: ClientDep,
    status: Annotated[OrderStatus | None, Query(description="Only orders in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None, Query(max_length=64, description="`next_cursor` of the previous page")
    ] = None,
) -> OrderPage:
    """Your orders, newest first, a page at a time."""
    return await orders.list_orders(
        state.pool, state.settings, client, status=status, limit=limit, cursor=cursor
    )


@router.get("/{order_id}", responses=NOT_FOUND)
async def get_order(order_id: OrderId, state: StateDep, client: ClientDep) -> OrderPublic:
    """One of your orders, with the time of each state change."""
    return await orders.get_order(state.pool, state.settings, client, order_id)


@router.post(
    "/{order_id}/cancel", response_model=OrderPublic, responses={**NOT_FOUND, **CANCEL_CONFLICT}
)
async def cancel_order(
    order_id: OrderId, state: StateDep, client: ClientDep, idempotency_key: IdempotencyKeyDep
) -> OrderPublic | Response:
    """Cancel a pending or confirmed order; reserved stock goes back to the catalogue.

    With an `Idempotency-Key`, a retry gets the first response again rather than a 409.
    """
    if idempotency_key is not None:
        stored = await orders.cancel_order_once(
            state.pool, state.settings, state.cache, client, order_id, idempotency_key
        )
        # Its order.cancelled event's deliveries are in the outbox.
        state.relay_waker.poke()
        return _stored(stored)
    cancelled = await orders.cancel_order(state.pool, state.settings, state.cache, client, order_id)
    state.relay_waker.poke()
    return cancelled


def _stored(stored: StoredResponse) -> Response:
    headers = {} if stored.location is None else {"Location": stored.location}
    if stored.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        stored.body, status_code=stored.status, headers=headers, media_type="application/json"
    )
