"""A loopback OTLP/HTTP receiver that keeps nothing: what the traced API of `make bench` exports
to, so that the figures measure the API's cost of tracing, not a collector's."""

from starlette.types import Receive, Scope, Send


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    more_body = True
    while more_body:
        message = await receive()
        more_body = message.get("more_body", False)
    # An empty ExportTraceServiceResponse: every span accepted.
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/x-protobuf"), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})
