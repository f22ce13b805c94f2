"""The catalogue's wire types, named by role. Field names are fixed: clients rely on them."""

from pydantic import BaseModel, model_validator

from shop.fields import Currency, Input, Name, PriceCents, Sku, Stock


class ProductCreate(Input):
    sku: Sku
    name: Name
    price_cents: PriceCents
    currency: Currency = "EUR"
    stock: Stock = 0


class ProductUpdate(Input):
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
