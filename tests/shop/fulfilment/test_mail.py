"""The mailer keeps its SMTP connections between messages, and replaces one that stops working;
a confirmation travels as the bytes the email generator would have written for it."""

import asyncio
import email.policy
from datetime import UTC, datetime
from email.charset import QP, Charset
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import parseaddr
from typing import Any

import aiosmtplib
import pytest
from aiosmtplib.email import flatten_message

from kit.settings import Settings
from shop.fulfilment.mail import Mailer, WireMessage, confirmation_message, confirmation_message_id
from shop.models import OrderStatus
from shop.orders.schemas import Customer, OrderLinePublic, OrderPublic


def message(n: int) -> EmailMessage:
    built = EmailMessage()
    built["From"] = "orders@example.com"
    built["To"] = f"customer{n}@example.com"
    built["Subject"] = f"Message {n}"
    built.set_content(f"Body {n}\n")
    return built


def counting_connects(mailer: Mailer, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one for every connection the mailer opens."""
    opened: list[int] = []
    connect = mailer._connect

    async def counted() -> aiosmtplib.SMTP:
        opened.append(1)
        return await connect()

    monkeypatch.setattr(mailer, "_connect", counted)
    return opened


async def test_messages_travel_over_a_connection_kept_open(
    settings: Settings, mail_sink: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailer = Mailer(settings)
    opened = counting_connects(mailer, monkeypatch)
    try:
        for n in range(5):
            await mailer.send(message(n))
        one_after_another = len(opened)
        await asyncio.gather(*(mailer.send(message(n)) for n in range(5, 45)))
    finally:
        await mailer.close()

    assert len(mail_sink.wait_for(45)) == 45
    assert one_after_another == 1
    # Concurrent sends open more, up to the limit, and no more.
    assert 1 <= len(opened) <= settings.smtp_max_connections


async def test_a_connection_the_server_dropped_or_that_failed_is_replaced(
    settings: Settings, mail_sink: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailer = Mailer(settings)
    opened = counting_connects(mailer, monkeypatch)
    try:
        await mailer.send(message(0))
        mail_sink.stop()  # drops the session the mailer keeps
        mail_sink.start()
        await mailer.send(message(1))
        mail_sink.reject_next(1)
        with pytest.raises(aiosmtplib.SMTPResponseException):
            await mailer.send(message(2))
        await mailer.send(message(3))
    finally:
        await mailer.close()

    assert [m["Subject"] for m in mail_sink.wait_for(3)] == ["Message 0", "Message 1", "Message 3"]
    assert len(opened) == 3


def confirmed_order(name: str) -> OrderPublic:
    now = datetime.now(UTC)
    return OrderPublic(
        id=7,
        status=OrderStatus.CONFIRMED,
        customer=Customer(email="ada@example.com", name=name),
        items=[OrderLinePublic(product_id=3, quantity=2, unit_price_cents=1_250)],
        total_cents=2_500,
        currency="EUR",
        created_at=now,
        confirmed_at=now,
        rejected_at=None,
        cancelled_at=None,
        rejection_reason=None,
        confirmation_sent_at=None,
    )


@pytest.mark.parametrize("name", ["Ada Lovelace", "Zoë Ångström"])
def test_a_confirmation_is_built_as_the_email_generator_would_write_it(
    settings: Settings, name: str
) -> None:
    """The bytes built by hand equal what aiosmtplib's send_message sent for the same message."""
    built = confirmation_message(confirmed_order(name), settings)

    assert isinstance(built, WireMessage)
    headers = BytesHeaderParser().parsebytes(built.content)
    body = BytesParser(policy=email.policy.default).parsebytes(built.content).get_content()
    # How the message was built before: compat32, a non-ASCII body quoted-printable.
    utf8_quoted_printable = Charset("utf-8")
    utf8_quoted_printable.body_encoding = QP
    reference = Message()
    reference.set_payload(body, "us-ascii" if body.isascii() else utf8_quoted_printable)
    for header in ("From", "To", "Subject", "Message-ID", "Date"):
        reference[header] = headers[header]
    assert built.content == flatten_message(reference, cte_type="8bit")
    assert built.sender == parseaddr(settings.mail_from)[1]
    assert built.recipients == ("ada@example.com",)
    assert f"Hello {name}," in body


async def test_a_built_confirmation_arrives_whole(settings: Settings, mail_sink: Any) -> None:
    mailer = Mailer(settings)
    try:
        await mailer.send(confirmation_message(confirmed_order("Zoë Ångström"), settings))
    finally:
        await mailer.close()

    [delivery] = mail_sink.deliveries
    assert delivery.mail_from == parseaddr(settings.mail_from)[1]
    assert delivery.rcpt_tos == ("ada@example.com",)
    assert delivery.message["Message-ID"] == confirmation_message_id(7, settings.message_id_domain)
    assert delivery.message["Subject"] == "Your order 7 is confirmed"
    assert "Hello Zoë Ångström," in delivery.message.get_content()
    assert "2 x product 3 at 12.50 EUR" in delivery.message.get_content()
