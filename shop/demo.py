"""The demo catalogue that `make run` loads, so that a new user can place an order at once."""

import asyncpg

from shop.catalogue import repository as products_repo
from shop.catalogue.schemas import ProductCreate
from shop.clients import repository as clients_repo
from shop.clients.service import NewClient, create_client

DEMO_CLIENT_NAME = "demo"

DEMO_CATALOGUE = (
    ProductCreate(sku="MUG-001", name="Enamel mug", price_cents=1_250, stock=100),
    ProductCreate(sku="TEE-002", name="Organic cotton T-shirt", price_cents=2_400, stock=50),
    ProductCreate(sku="BAG-003", name="Canvas tote bag", price_cents=1_800, stock=75),
    ProductCreate(sku="CAP-004", name="Baseball cap", price_cents=1_900, stock=40),
    ProductCreate(sku="NTB-005", name="Dot-grid notebook", price_cents=900, stock=200),
    ProductCreate(sku="PEN-006", name="Brass pen", price_cents=3_500, stock=30),
    ProductCreate(sku="STK-007", name="Sticker pack", price_cents=400, stock=500),
    ProductCreate(sku="HOO-008", name="Hooded sweatshirt", price_cents=5_900, stock=25),
    ProductCreate(sku="LMT-009", name="Limited print (one left)", price_cents=12_000, stock=1),
)


async def seed_demo(conn: asyncpg.Connection) -> NewClient:
    """Upserts the demo catalogue and replaces the demo client's key with a fresh one."""
    async with conn.transaction():
        for product in DEMO_CATALOGUE:
            await products_repo.upsert_by_sku(conn, product)
        await clients_repo.revoke_by_name(conn, DEMO_CLIENT_NAME)
        return await create_client(conn, DEMO_CLIENT_NAME, is_admin=True)
