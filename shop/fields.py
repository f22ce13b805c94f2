"""Field types every wire schema shares: ids, names, money, stock. Limits are the database's."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

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


class Input(BaseModel):
    """A request body: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")
