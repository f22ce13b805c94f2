"""The order's wire types, named by role. Field names are fixed: clients rely on them."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from kit.email_address import EmailAddress
from shop.fields import Id, Input, Name
from shop.models import OrderStatus

MAX_ORDER_LINES = 50
MAX_LINE_QUANTITY = 1_000


class Customer(Input):
    email: EmailAddress = Field(max_length=320)
    name: Name


class OrderLineCreate(Input):
    product_id: Id
    quantity: Annotated[int, Field(strict=True, ge=1, le=MAX_LINE_QUANTITY)]


class OrderCreate(Input):
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
