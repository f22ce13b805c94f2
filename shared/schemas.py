"""The API's wire types, named by role. Field names are fixed: clients rely on them."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.email_address import EmailAddress
from shared.models import OrderStatus

MAX_ORDER_LINES = 50
MAX_LINE_QUANTITY = 1_000
# Ids are Postgres bigints; anything larger cannot name a row and must not reach the driver.
MAX_ID = 2**63 - 1
MAX_PRICE_CENTS = 10**12
MAX_STOCK = 2**31 - 1

Id = Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]
# Postgres text cannot hold NUL: refused here, it is a 422 instead of a driver error.
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00]+$"),
]
Sku = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[\w.-]+$")
]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
PriceCents = Annotated[int, Field(strict=True, ge=0, le=MAX_PRICE_CENTS)]
Stock = Annotated[int, Field(strict=True, ge=0, le=MAX_STOCK)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Customer(_Input):
    email: EmailAddress = Field(max_length=320)
    name: Name


class OrderLineCreate(_Input):
    product_id: Id
    quantity: Annotated[int, Field(strict=True, ge=1, le=MAX_LINE_QUANTITY)]


class OrderCreate(_Input):
    customer: Customer
    items: list[OrderLineCreate] = Field(min_length=1, max_length=MAX_ORDER_LINES)

    @model_validator(mode="after")
    def _each_product_once(self) -> "OrderCreate":
        product_ids = [line.product_id for line in self.items]
        if len(set(product_ids)) != len(product_ids):
            raise ValueError("each product may appear only once; add up the quantities instead")
        return self


class OrderLinePublic(BaseModel):
    product_id: int
    quantity: int
    unit_price_cents: int


class OrderPublic(BaseModel):
    id: int
    status: OrderStatus
    customer: Customer
    items: list[OrderLinePublic]
    total_cents: int
    currency: str
    created_at: datetime
    confirmed_at: datetime | None
    rejected_at: datetime | None
    cancelled_at: datetime | None
    rejection_reason: str | None
    confirmation_sent_at: datetime | None


class OrderPage(BaseModel):
    data: list[OrderPublic]
    next_cursor: str | None


class ProductCreate(_Input):
    sku: Sku
    name: Name
    price_cents: PriceCents
    currency: Currency = "EUR"
    stock: Stock = 0


class ProductUpdate(_Input):
    name: Name | None = None
    price_cents: PriceCents | None = None
    stock: Stock | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> "ProductUpdate":
        if not self.model_fields_set:
            raise ValueError("name at least one of name, price_cents, stock")
        for field in self.model_fields_set:
            if getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


class ProductPublic(BaseModel):
    id: int
    sku: str
    name: str
    price_cents: int
    currency: str
    stock: int


class ProductPage(BaseModel):
    data: list[ProductPublic]
    next_cursor: str | None


class Problem(BaseModel):
    """An RFC 9457 problem detail."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
