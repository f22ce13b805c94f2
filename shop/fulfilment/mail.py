"""Confirmation emails, sent over SMTP with a timeout and a Message-ID derived from the order."""

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass
from email.charset import QP, Charset
from email.message import EmailMessage, Message
from email.utils import formatdate, parseaddr
from urllib.parse import unquote, urlsplit

import aiosmtplib

from kit.settings import Settings
from shop.orders.schemas import OrderPublic

# Non-ASCII bodies (a customer's name) stay readable on the wire, and need no 8BITMIME.
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP
# A pooled connection idle longer than this is dropped rather than reused: servers close idle
# connections after a few minutes (RFC 5321 asks for at least 5), and reusing one they closed
# would fail the send.
_IDLE_LIMIT_S = 30.0


def confirmation_message_id(order_id: int, domain: str) -> str:
    """Stable per order: if a confirmation is ever sent twice, receivers can drop the copy."""
    return f"<order-{order_id}-confirmation@{domain}>"


@dataclass(frozen=True, slots=True)
class WireMessage:
    """A message already in the form it travels in: its envelope, and the bytes sent after DATA.

    `Mailer.send` hands these to SMTP as they are. Given a `Message` instead, aiosmtplib's
    `send_message` copies it, reads the envelope back out of its headers and runs the email
    generator over it on every send: 140 µs of the worker's ~2.3 ms of CPU per order.
    """

    sender: str
    recipients: tuple[str, ...]
    # Local line endings: SMTP's DATA turns them into CRLF (and dot-stuffs) on the way out.
    content: bytes


def confirmation_message(order: OrderPublic, settings: Settings) -> Message | WireMessage:
    lines = "\n".join(
        f"  {line.quantity} x product {line.product_id} at"
        f" {_format_money(line.unit_price_cents, order.currency)}"
        for line in order.items
    )
    body = (
        f"Hello {order.customer.name},\n\n"
        f"we have reserved everything in your order {order.id}:\n\n{lines}\n\n"
        f"Total: {_format_money(order.total_cents, order.currency)}\n"
    )
    headers = {
        "From": settings.mail_from,
        "To": str(order.customer.email),
        "Subject": f"Your order {order.id} is confirmed",
        "Message-ID": confirmation_message_id(order.id, settings.message_id_domain),
        "Date": formatdate(localtime=False, usegmt=True),
    }
    if all(value.isascii() for value in headers.values()):
        # ASCII headers need no encoding: written out as given, with the MIME headers of a
        # plain-text body, byte for byte as the email generator writes the compat32 message
        # this used to send (tests/shop/fulfilment/test_mail.py; it would fold a header line longer
        # than 78 characters at a space, which SMTP does not need below 998). EmailMessage
        # would also parse every header as it is set: 16 % of the worker's CPU once.
        return WireMessage(
            sender=parseaddr(settings.mail_from)[1],
            recipients=(str(order.customer.email),),
            content=_plain_text(headers, body),
        )
    # Non-ASCII addresses or a non-ASCII display name: EmailMessage encodes them properly.
    message = EmailMessage()
    message.set_content(body)
    for name, value in headers.items():
        message[name] = value
    return message


def _plain_text(headers: dict[str, str], body: str) -> bytes:
    """A single-part text/plain message with ASCII `headers` and any `body`, as bytes."""
    if body.isascii():
        charset, encoding, encoded_body = "us-ascii", "7bit", body
    else:
        # Quoted-printable keeps a customer's name readable on the wire and needs no 8BITMIME.
        charset, encoding, encoded_body = "utf-8", "quoted-printable", _UTF8.body_encode(body)
    lines = [
        "MIME-Version: 1.0",
        f'Content-Type: text/plain; charset="{charset}"',
        f"Content-Transfer-Encoding: {encoding}",
        *(f"{name}: {value}" for name, value in headers.items()),
        "",
        encoded_body,
    ]
    return "\n".join(lines).encode("ascii")


def _format_money(cents: int, currency: str) -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"


async def _transmit(smtp: aiosmtplib.SMTP, message: Message | WireMessage) -> None:
    if isinstance(message, WireMessage):
        await smtp.sendmail(message.sender, message.recipients, message.content)
    else:
        await smtp.send_message(message)


class Mailer:
    """Sends over a few long-lived SMTP connections instead of one connection per message.

    A new connection costs a TCP handshake, the greeting, EHLO, possibly STARTTLS and AUTH, and
    QUIT: more round trips than the message itself. Connections are kept while they work; one
    that fails in any way is closed and not reused, so an error never leaves a conversation in
    an unknown state for the next message. Each command keeps the `SMTP_TIMEOUT_S` timeout.
    """

    def __init__(self, settings: Settings) -> None:
        parts = urlsplit(settings.smtp_url)
        self._hostname = settings.smtp_host
        self._port = settings.smtp_port
        self._use_tls = parts.scheme == "smtps"
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._timeout_s = settings.smtp_timeout_s
        # Our EHLO name, looked up once: left to aiosmtplib it is socket.getfqdn() in a thread
        # for every connection (docs/decisions/0017-kept-smtp-connections.md).
        self._local_hostname = socket.getfqdn()
        self._slots = asyncio.Semaphore(settings.smtp_max_connections)
        # Idle connections and when each was last used; the most recently used is taken first.
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []

    async def send(self, message: Message | WireMessage) -> None:
        async with self._slots:
            smtp, reused = self._take_idle(), True
            if smtp is None:
                smtp, reused = await self._connect(), False
            try:
                await _transmit(smtp, message)
            except aiosmtplib.SMTPServerDisconnected:
                smtp.close()
                if not reused:
                    raise
                # The server closed a connection we kept (an idle timeout, a restart) before
                # we noticed: once more, on a new connection.
                smtp = await self._connect()
                try:
                    await _transmit(smtp, message)
                except BaseException:
                    smtp.close()
                    raise
            except BaseException:
                smtp.close()
                raise
            self._idle.append((smtp, time.monotonic()))

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        while self._idle:
            smtp, last_used = self._idle.pop()
            if smtp.is_connected and time.monotonic() - last_used < _IDLE_LIMIT_S:
                return smtp
            smtp.close()
        return None

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(
            hostname=self._hostname,
            port=self._port,
            username=self._username,
            password=self._password,
            use_tls=self._use_tls,
            # Plain smtp:// still upgrades with STARTTLS whenever the server offers it.
            start_tls=False if self._use_tls else None,
            timeout=self._timeout_s,
            local_hostname=self._local_hostname,
        )
        try:
            await smtp.connect()
        except BaseException:
            smtp.close()
            raise
        return smtp

    async def close(self) -> None:
        """Says goodbye on every idle connection (at worker shutdown)."""
        idle, self._idle = self._idle, []
        for smtp, _ in idle:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await smtp.quit()
            smtp.close()
