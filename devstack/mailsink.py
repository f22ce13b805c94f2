"""An SMTP server that delivers nowhere and keeps everything it is sent.

Each message goes to a Maildir (one file per message under new/, readable by any mail client
or `cat`) and to an in-memory list that tests inspect. Runs on a background thread; for a
separate process: `python -m devstack.mailsink --port 1025 --maildir DIR`.
"""

import argparse
import email.policy
import itertools
import mailbox
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from functools import cached_property
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from devstack.services import LOOPBACK, ServiceError, port_is_free

DEFAULT_REJECTION = "451 4.3.0 Mail sink told to refuse this message (fault injection)"


@dataclass(frozen=True)
class Delivery:
    """One message as the sink received it, with the SMTP envelope, which may name Bcc rcpts."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    # With local line endings, as in the Maildir file.
    content: bytes

    @cached_property
    def message(self) -> EmailMessage:
        # Parsed when first asked for, not as it arrives: parsing every header with
        # email.policy.default cost the sink more CPU than the SMTP conversation, on the cores
        # the worker it serves runs on (docs/decisions/0022-mail-sink-without-fsync.md), and
        # mostly nobody asks.
        return BytesParser(_class=EmailMessage, policy=email.policy.default).parsebytes(
            self.content
        )

    @property
    def subject(self) -> str | None:
        """The Subject header as sent, from the headers alone."""
        return BytesHeaderParser().parsebytes(self.content).get("Subject")


class MailSink:
    """Accepts every message on `host`:`port` and keeps it; see the module docstring."""

    def __init__(
        self,
        maildir: Path | None,
        port: int,
        *,
        host: str = LOOPBACK,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.maildir_path = maildir
        self._maildir = mailbox.Maildir(maildir, create=True) if maildir is not None else None
        # Unique Maildir file names within this process (with the time and the pid, across).
        self._file_numbers = itertools.count()
        self._on_delivery = on_delivery
        self._deliveries: list[Delivery] = []
        self._rejections: list[str] = []
        # Recipient address -> the reply its RCPT TO gets instead of 250.
        self._refused: dict[str, str] = {}
        # Guards the lists and the Maildir, shared by the SMTP thread and the caller's thread.
        self._changed = threading.Condition()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._controller is not None

    @property
    def deliveries(self) -> list[Delivery]:
        with self._changed:
            return list(self._deliveries)

    @property
    def messages(self) -> list[EmailMessage]:
        return [delivery.message for delivery in self.deliveries]

    def clear(self) -> None:
        """Forget every message, in memory and in the Maildir, and any pending rejections."""
        with self._changed:
            self._deliveries.clear()
            self._rejections.clear()
            self._refused.clear()
            if self._maildir is not None:
                self._maildir.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """Block until at least `count` messages have arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._deliveries) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"expected {count} message(s) within {timeout:g}s, "
                        f"got {len(self._deliveries)}"
                    )
                self._changed.wait(remaining)
            return [delivery.message for delivery in self._deliveries]

    def reject_next(self, count: int = 1, reply: str = DEFAULT_REJECTION) -> None:
        """Answer the next `count` messages with `reply` (a 4xx or 5xx line) and drop them."""
        with self._changed:
            self._rejections.extend([reply] * count)

    def refuse_recipient(self, address: str, reply: str = "550 5.1.1 No such mailbox") -> None:
        """Answer RCPT TO `address` with `reply` (a 4xx or 5xx line), until cleared."""
        with self._changed:
            self._refused[address.lower()] = reply

    def start(self) -> None:
        if self._controller is not None:
            raise ServiceError(f"mail sink on port {self.port} is already running")
        if not port_is_free(self.port) and self.host == LOOPBACK:
            raise ServiceError(f"port {self.port} is taken: cannot start the mail sink")
        # A Controller closes its event loop when stopped, so every start needs a new one.
        controller = Controller(
            self,
            hostname=self.host,
            port=self.port,
            ready_timeout=10.0,
            server_hostname="mailsink.devstack",
        )
        try:
            controller.start()
        except BaseException:
            if not controller.loop.is_closed():
                controller.loop.close()
            raise
        self._controller = controller

    def stop(self) -> None:
        """Stop listening and drop open sessions; kept messages stay."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def kill(self) -> None:
        # Nothing harsher exists for a thread in this process; to the SMTP client, dropped
        # sessions and a closed port look the same as a crashed server.
        self.stop()

    async def handle_RCPT(  # noqa: N802 -- the hook name aiosmtpd calls
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        with self._changed:
            refusal = self._refused.get(address.lower())
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 -- the hook name aiosmtpd calls
        with self._changed:
            if self._rejections:
                return self._rejections.pop(0)
        # Kept with local line endings, as Maildir files and Python strings expect, not
        # with SMTP's CRLF.
        content = (envelope.original_content or b"").replace(b"\r\n", b"\n")
        delivery = Delivery(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            content=content,
        )
        with self._changed:
            if self.maildir_path is not None:
                self._keep_in_maildir(self.maildir_path, content)
            self._deliveries.append(delivery)
            self._changed.notify_all()
        if self._on_delivery is not None:
            self._on_delivery(delivery)
        return "250 2.0.0 Message kept"

    def _keep_in_maildir(self, maildir: Path, content: bytes) -> None:
        """Writes the message under tmp/ and moves it into new/, where readers find it whole.

        Not `mailbox.Maildir.add`, which fsyncs every message: that blocked this event loop, and
        so every other SMTP session, for a disk flush per message, on the disk where Postgres
        flushes its commits (half the sink's time in the end-to-end benchmark). A development
        sink that loses the last messages to a power cut loses nothing anyone relies on.
        """
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(self._file_numbers)}.mailsink"
        temporary = maildir / "tmp" / name
        temporary.write_bytes(content)
        os.rename(temporary, maildir / "new" / name)


def print_delivery(delivery: Delivery) -> None:
    print(
        f"mail sink: {delivery.mail_from} -> {', '.join(delivery.rcpt_tos)}: "
        f"{delivery.subject or '(no subject)'}",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.mailsink", description="An SMTP server that keeps every message."
    )
    parser.add_argument("--host", default=LOOPBACK, help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=1025, help="SMTP port (%(default)s)")
    parser.add_argument("--maildir", type=Path, required=True, help="where to keep messages")
    args = parser.parse_args(argv)

    # Block the stop signals before the SMTP thread starts, so that it inherits the mask and
    # sigwait() below is the only place they are received.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    sink = MailSink(args.maildir, args.port, host=args.host, on_delivery=print_delivery)
    try:
        sink.start()
    except (OSError, ServiceError) as error:
        print(f"mail sink: {error}", file=sys.stderr)
        return 1
    print(f"mail sink: listening on {sink.url}, keeping messages in {args.maildir}", flush=True)
    signal.sigwait(stop_signals)
    sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
