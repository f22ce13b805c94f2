"""`ordersctl webhooks`: every client's endpoints, an endpoint's delivery log, redelivering."""

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
from click.testing import Result
from typer.testing import CliRunner

from kit.settings import Settings
from ordersctl.main import app as ordersctl
from shop.catalogue.schemas import ProductPublic
from tests.app_fixtures import bearer
from tests.webhook_fixtures import pipeline, running_receiver

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


async def ctl(*args: str) -> Result:
    return await asyncio.to_thread(
        CliRunner().invoke, ordersctl, list(args), env={"COLUMNS": "250"}
    )


async def ctl_json(*args: str) -> Any:
    result = await ctl(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def test_operators_list_endpoints_read_their_log_and_redeliver_events(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
) -> None:
    product = await make_product(stock=5)
    async with running_receiver() as receiver, pipeline(settings) as runner:
        created = await hook_api.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "events": ["order.created"]},
            headers=bearer(client_key),
        )
        endpoint = created.json()
        await hook_api.post(
            "/v1/orders",
            json={
                "customer": {"email": "ada@example.com", "name": "Ada"},
                "items": [{"product_id": product.id, "quantity": 1}],
            },
            headers=bearer(client_key),
        )
        await runner.run_until_idle()
        event_id = receiver.ids()[0]

        listed = await ctl_json("webhooks", "list")
        log = await ctl_json("webhooks", "deliveries", str(endpoint["id"]))
        redelivered = await ctl_json("webhooks", "redeliver", event_id)
        await runner.run_until_idle()
        table = await ctl("webhooks", "list")
        missing = await ctl("webhooks", "redeliver", "evt_" + "0" * 32)

    assert [(e["id"], e["delivered"], e["pending"], e["dead"]) for e in listed] == [
        (endpoint["id"], 1, 0, 0)
    ]
    assert endpoint["secret"] not in json.dumps(listed)
    assert [(entry["event_id"], entry["status_code"]) for entry in log] == [(event_id, 200)]
    assert redelivered == {"event_id": event_id, "deliveries": 1}
    assert receiver.ids() == [event_id, event_id]
    assert table.exit_code == 0
    assert receiver.url in table.stdout
    assert missing.exit_code == 1
    assert "no event" in missing.output
