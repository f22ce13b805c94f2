from typing import Annotated, Any

import structlog
from fastapi import APIRouter, BackgroundTasks, Path, Query, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from api.deps import AdminDep, AppState, ClientDep, StateDep
from api.problems import COMMON_PROBLEMS, FORBIDDEN, NOT_FOUND, SKU_TAKEN
from kit.pagination import decode_cursor
from shop.catalogue import service as catalogue
from shop.catalogue.schemas import ProductCreate, ProductPage, ProductPublic, ProductUpdate
from shop.fields import MAX_ID

log = structlog.get_logger(__name__)

router = APIRouter(
    prefix="/v1/products",
    tags=["catalogue"],
    responses=COMMON_PROBLEMS,
)

ProductId = Annotated[int, Path(ge=1, le=MAX_ID, description="The product's id")]


class JSONBytes(JSONResponse):
    """JSON already serialised (the cache holds bytes). A JSONResponse, so that the OpenAPI
    document describes the body with the route's response_model rather than as a string."""

    def render(self, content: Any) -> bytes:
        assert isinstance(content, bytes)
        return content


@router.get("", response_model=ProductPage, response_class=JSONBytes)
async def list_products(
    state: StateDep,
    _client: ClientDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The catalogue in id order, served from the cache."""
    after_id = 0 if cursor is None else decode_cursor(cursor)
    payload = await catalogue.list_products_json(
        state.pool, state.settings, state.cache, after_id, limit
    )
    return JSONBytes(payload)


@router.get(
    "/{product_id}", response_model=ProductPublic, response_class=JSONBytes, responses=NOT_FOUND
)
async def get_product(product_id: ProductId, state: StateDep, _client: ClientDep) -> Response:
    """One product, served from the cache; never older than the last committed write."""
    payload = await catalogue.get_product_json(state.pool, state.settings, state.cache, product_id)
    return JSONBytes(payload)


@router.post("", status_code=201, responses={**FORBIDDEN, **SKU_TAKEN})
async def create_product(
    body: ProductCreate,
    state: StateDep,
    _admin: AdminDep,
    response: Response,
    background_tasks: BackgroundTasks,
) -> ProductPublic:
    """Add a product to the catalogue (admin keys only)."""
    product = await catalogue.create_product(state.pool, state.settings, state.cache, body)
    response.headers["Location"] = f"/v1/products/{product.id}"
    # Warming is an optimisation whose loss costs one cache miss: BackgroundTasks, not the queue.
    background_tasks.add_task(_warm, state, product.id)
    return product


@router.patch("/{product_id}", responses={**FORBIDDEN, **NOT_FOUND})
async def update_product(
    product_id: ProductId,
    body: ProductUpdate,
    state: StateDep,
    _admin: AdminDep,
    background_tasks: BackgroundTasks,
) -> ProductPublic:
    """Change a product's name, price or stock (admin keys only)."""
    product = await catalogue.update_product(
        state.pool, state.settings, state.cache, product_id, body
    )
    background_tasks.add_task(_warm, state, product.id)
    return product


def product_route() -> BaseRoute:
    """The route of `get_product`, which api.cached_reads answers from the cache ahead of it."""
    return next(
        route
        for route in router.routes
        if isinstance(route, APIRoute) and route.endpoint is get_product
    )


async def _warm(state: AppState, product_id: int) -> None:
    try:
        await catalogue.get_product_json(state.pool, state.settings, state.cache, product_id)
    except Exception as exc:  # a failed warm-up only costs the next reader a cache miss
        log.warning("cache_warm_failed", product_id=product_id, error=repr(exc))
