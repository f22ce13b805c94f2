"""The mailer keeps its SMTP connections between messages, and replaces one that stops working."""

import asyncio
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest

from shared.mail import Mailer
from shared.settings import Settings


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
