"""The SMTP sink keeps every message, in memory and in a Maildir, across restarts."""

import mailbox
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from devstack.mailsink import MailSink
from devstack.services import free_port


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[MailSink]:
    service = MailSink(tmp_path / "mail", free_port())
    service.start()
    yield service
    service.stop()


def order_confirmation(subject: str = "Your order 1 is confirmed") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Orders <orders@example.com>"
    message["To"] = "Ada Lovelace <ada@example.com>"
    message["Subject"] = subject
    message["Message-ID"] = "<order-1@orders.example.com>"
    message.set_content("Thank you, Ada.\nTotal: 25,00 €\n")
    return message


def send(port: int, message: EmailMessage, recipients: list[str] | None = None) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.send_message(message, to_addrs=recipients)


def test_keeps_a_message_in_memory_and_in_the_maildir(sink: MailSink, tmp_path: Path) -> None:
    send(sink.port, order_confirmation(), ["ada@example.com", "audit@example.com"])

    [kept] = sink.messages
    assert kept["Subject"] == "Your order 1 is confirmed"
    assert kept["Message-ID"] == "<order-1@orders.example.com>"
    assert kept.get_content() == "Thank you, Ada.\nTotal: 25,00 €\n"
    [delivery] = sink.deliveries
    assert delivery.mail_from == "orders@example.com"
    assert delivery.rcpt_tos == ("ada@example.com", "audit@example.com")

    [on_disk] = list(mailbox.Maildir(tmp_path / "mail", create=False))
    assert on_disk["Subject"] == "Your order 1 is confirmed"
    assert on_disk["Message-ID"] == "<order-1@orders.example.com>"
    assert sink.maildir_path is not None
    assert len(list((sink.maildir_path / "new").iterdir())) == 1


def test_restarts_on_the_same_port_and_keeps_what_it_had(sink: MailSink, tmp_path: Path) -> None:
    send(sink.port, order_confirmation("first"))

    sink.stop()

    assert not sink.running
    with pytest.raises(OSError):
        send(sink.port, order_confirmation("lost"))

    sink.start()
    send(sink.port, order_confirmation("second"))

    assert [message["Subject"] for message in sink.messages] == ["first", "second"]
    assert len(mailbox.Maildir(tmp_path / "mail", create=False)) == 2


def test_refuses_messages_when_told_to_then_accepts_again(sink: MailSink) -> None:
    sink.reject_next(1)

    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(sink.port, order_confirmation("refused"))
    send(sink.port, order_confirmation("accepted"))

    assert refused.value.smtp_code == 451
    assert [message["Subject"] for message in sink.messages] == ["accepted"]


def test_wait_for_returns_once_enough_messages_arrived(sink: MailSink) -> None:
    send(sink.port, order_confirmation())

    assert len(sink.wait_for(1, timeout=1)) == 1
    with pytest.raises(TimeoutError):
        sink.wait_for(2, timeout=0.1)


def test_clear_forgets_every_message(sink: MailSink, tmp_path: Path) -> None:
    send(sink.port, order_confirmation())

    sink.clear()

    assert sink.messages == []
    assert len(mailbox.Maildir(tmp_path / "mail", create=False)) == 0


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.slow
def test_runs_as_a_separate_process(tmp_path: Path) -> None:
    port = free_port()
    maildir = tmp_path / "mail"
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.mailsink", "--port", str(port), "--maildir", maildir],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port)
        send(port, order_confirmation())
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)

    assert process.returncode == 0
    assert "Your order 1 is confirmed" in output
    [on_disk] = list(mailbox.Maildir(maildir, create=False))
    assert on_disk["Subject"] == "Your order 1 is confirmed"
