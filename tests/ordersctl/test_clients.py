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


async def test_an_admin_key_is_a_console_operator_unless_created_or_set_as_viewer(
    db: asyncpg.Pool,
) -> None:
    operator = await ctl_json("clients", "create", "on-call", "--admin")
    viewer = await ctl_json("clients", "create", "support", "--admin", "--console-role", "viewer")
    plain = await ctl_json("clients", "create", "storefront")
    promoted = await ctl_json("clients", "console-role", str(viewer["id"]), "operator")
    refused = await ctl_json("clients", "console-role", str(plain["id"]), "viewer", code=1)
    removed = await ctl_json("clients", "console-role", str(operator["id"]), "none")

    assert (operator["console_role"], viewer["console_role"], plain["console_role"]) == (
        "operator",
        "viewer",
        None,
    )
    assert promoted["updated"] is True
    assert refused["updated"] is False
    assert removed["updated"] is True
    roles = {row["name"]: row["console_role"] for row in await ctl_json("clients", "list")}
    assert roles == {"on-call": None, "support": "operator", "storefront": None}
