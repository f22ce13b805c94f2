"""One HTTP/1.1 POST on a connection of its own, to an address already checked.

What a webhook try needs and nothing more: the connection goes to the address given, not to
whatever the URL's host resolves to now; the URL's host is the Host header and the TLS server
name its certificate is checked against; redirects are answers like any other; no proxy; only
the first bytes of the answer are read. h11 does the HTTP, asyncio the connection: a general
client (httpx) cost about twice the CPU per request here for features a try never uses
(docs/decisions/0033-webhook-batches.md).
"""

import asyncio
import ssl
from dataclasses import dataclass

import h11


class ConnectFailed(OSError):
    """No connection to the address (refused, unreachable, TLS handshake failed)."""


class ProtocolFailed(OSError):
    """The receiver's answer was not HTTP/1.1, or the connection closed before one came."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect (the checked address), and the URL's own host, port, path and scheme."""

    address: str
    port: int
    # The URL's host (the TLS server name), and its host[:port] (the Host header).
    host: str
    host_header: str
    target: str
    tls: bool


async def post(
    endpoint: Endpoint,
    headers: dict[str, str],
    body: bytes,
    *,
    tls: ssl.SSLContext,
    connect_timeout_s: float,
    keep_bytes: int,
) -> tuple[int, bytes]:
    """POSTs `body`; returns the status code and at most `keep_bytes` of the answer's body.
    The caller bounds the whole exchange; this bounds the connecting alone."""
    try:
        async with asyncio.timeout(connect_timeout_s):
            reader, writer = await asyncio.open_connection(
                endpoint.address,
                endpoint.port,
                ssl=tls if endpoint.tls else None,
                server_hostname=endpoint.host if endpoint.tls else None,
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
    try:
        return await _exchange(reader, writer, endpoint, headers, body, keep_bytes)
    except h11.RemoteProtocolError as exc:
        raise ProtocolFailed(f"the answer is not HTTP/1.1: {exc}") from exc
    finally:
        writer.transport.abort()


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    endpoint: Endpoint,
    headers: dict[str, str],
    body: bytes,
    keep_bytes: int,
) -> tuple[int, bytes]:
    conn = h11.Connection(our_role=h11.CLIENT)
    request = h11.Request(
        method="POST",
        target=endpoint.target,
        headers=[
            ("host", endpoint.host_header),
            *headers.items(),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ],
    )
    writer.write(
        conn.send(request) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
    )
    status_code: int | None = None
    kept = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(16 * 1024)
            if not data and status_code is not None:
                return status_code, kept
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Response):
            status_code = event.status_code
        elif isinstance(event, h11.Data):
            kept += bytes(event.data)[: keep_bytes - len(kept)]
            if len(kept) >= keep_bytes:
                assert status_code is not None
                return status_code, kept
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            if status_code is None:
                raise ProtocolFailed("the connection closed before an answer")
            return status_code, kept
