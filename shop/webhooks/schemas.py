"""Webhooks' wire types, named by role. Field names are fixed: clients rely on them."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator

from shop.fields import Input
from shop.models import WebhookDeliveryStatus, WebhookEventType

MAX_URL_LENGTH = 2048


class WebhookEndpointCreate(Input):
    url: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_URL_LENGTH,
            description="An https URL on a public address; it is sent a POST for each event.",
        ),
    ]
    events: Annotated[
        list[WebhookEventType],
        Field(min_length=1, max_length=len(WebhookEventType), description="The events to send"),
    ]

    @field_validator("events")
    @classmethod
    def _each_once(cls, events: list[WebhookEventType]) -> list[WebhookEventType]:
        return list(dict.fromkeys(events))


class WebhookEndpointPublic(BaseModel):
    id: int
    url: str
    events: list[WebhookEventType]
    created_at: datetime
    # Set once deliveries failed for longer than WEBHOOK_MAX_AGE_S; it then gets no events.
    disabled_at: datetime | None
    disabled_reason: str | None


class WebhookEndpointList(BaseModel):
    data: list[WebhookEndpointPublic]


class WebhookEndpointCreated(BaseModel):
    """The endpoint with its signing secret: shown here, and on rotation, only."""

    id: int
    url: str
    events: list[WebhookEventType]
    secret: Annotated[
        str,
        Field(
            description="The Standard Webhooks secret (`whsec_` and base64) that signs every"
            " delivery; verify `webhook-signature` with it."
        ),
    ]
    created_at: datetime


class WebhookSecretRotated(BaseModel):
    id: int
    secret: Annotated[str, Field(description="The new secret, signing from now on")]
    previous_secret_expires_at: Annotated[
        datetime,
        Field(description="Until then deliveries carry a signature by the previous secret too"),
    ]


class WebhookEvent(BaseModel):
    """The body of every delivery."""

    id: Annotated[str, Field(description="`evt_...`, also the `webhook-id` header")]
    type: WebhookEventType
    timestamp: Annotated[datetime, Field(description="When it happened (RFC 3339)")]
    data: Annotated[
        dict[str, Any], Field(description="The order, as GET /v1/orders/{id} returned it then")
    ]


class WebhookAttemptPublic(BaseModel):
    """One try of a delivery to the endpoint: a request and what came of it, or a try failed
    without a request (`error` "not sent: ..."), as when another try of the same job had just
    got no answer from the endpoint."""

    delivery_id: int
    event_id: str
    event_type: WebhookEventType
    # The delivery's state now: pending (to be tried again), delivered or dead.
    delivery_status: WebhookDeliveryStatus
    attempted_at: datetime
    status_code: Annotated[int | None, Field(description="None when no answer came")]
    latency_ms: int
    error: str | None
    next_attempt_at: Annotated[
        datetime | None, Field(description="When the delivery is tried again; None if never")
    ]


class WebhookAttemptPage(BaseModel):
    data: list[WebhookAttemptPublic]
    next_cursor: str | None


class WebhookEventPage(BaseModel):
    data: list[WebhookEvent]
    has_more: Annotated[
        bool, Field(description="More events follow: ask again with `after` = the last id")
    ]


class WebhookRedelivery(BaseModel):
    event_id: str
    deliveries: Annotated[
        int, Field(description="Endpoints the event is on its way to, with its own webhook-id")
    ]
