"""Confirmation emails, sent over SMTP with a timeout and a Message-ID derived from the order."""

import socket
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

import aiosmtplib

from shared.schemas import OrderPublic
from shared.settings import Settings


def confirmation_message_id(order_id: int, domain: str) -> str:
    """Stable per order: if a confirmation is ever sent twice, receivers can drop the copy."""
    return f"<order-{order_id}-confirmation@{domain}>"


def confirmation_message(order: OrderPublic, settings: Settings) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = str(order.customer.email)
    message["Subject"] = f"Your order {order.id} is confirmed"
    message["Message-ID"] = confirmation_message_id(order.id, settings.message_id_domain)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    lines = "\n".join(
        f"  {line.quantity} x product {line.product_id} at"
        f" {_format_money(line.unit_price_cents, order.currency)}"
        for line in order.items
    )
    message.set_content(
        f"Hello {order.customer.name},\n\n"
        f"we have reserved everything in your order {order.id}:\n\n{lines}\n\n"
        f"Total: {_format_money(order.total_cents, order.currency)}\n"
    )
    return message


def _format_money(cents: int, currency: str) -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"


class Mailer:
    def __init__(self, settings: Settings) -> None:
        parts = urlsplit(settings.smtp_url)
        self._hostname = settings.smtp_host
        self._port = settings.smtp_port
        self._use_tls = parts.scheme == "smtps"
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._timeout_s = settings.smtp_timeout_s
        # Our EHLO name, looked up once: left to aiosmtplib it is socket.getfqdn() in a thread
        # for every message (docs/performance.md).
        self._local_hostname = socket.getfqdn()

    async def send(self, message: EmailMessage) -> None:
        await aiosmtplib.send(
            message,
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
