"""`ordersctl clients create|list|revoke` (ordersctl/commands/clients.py)."""

import asyncpg

from tests.ordersctl.fixtures import ctl, ctl_json


async def test_clients_create_list_revoke_in_json(db: asyncpg.Pool) -> None:
    created = await ctl_json("clients", "create", "shop", "--admin")
    listed = await ctl_json("clients", "list")
    revoked = await ctl_json("clients", "revoke", str(created["id"]))
    again = await ctl_json("clients", "revoke", str(created["id"]), code=1)

    assert created["name"] == "shop"
    assert created["is_admin"] is True
    assert created["api_key"].startswith(created["key_prefix"])
    assert [(row["id"], row["name"], row["revoked_at"]) for row in listed] == [
        (created["id"], "shop", None)
    ]
    assert "key_hash" not in listed[0]
    assert revoked == {"client_id": created["id"], "revoked": True}
    assert again == {"client_id": created["id"], "revoked": False}
    table = await ctl("clients", "list")
    assert "shop" in table.stdout
