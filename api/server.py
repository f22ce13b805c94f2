"""The production server: Granian serving `api.main:app`, and the flags it is shipped with.

The Dockerfile's CMD is `granian` with `granian_args("0.0.0.0", 8000)` (a test keeps the two
equal), `make run` starts the same command, and the tests that signal and kill real API
processes run it. Worker processes come from `GRANIAN_WORKERS` (default 1), which Granian reads
itself, so that a deployment sets them without touching the command.
"""

APP = "api.main:app"
# How long SIGTERM waits for requests in flight before the workers are killed (SIGKILL).
SHUTDOWN_GRACE_S = 10
# How long an idle keep-alive connection is kept: the proxy gives up on its idle upstream
# connections after 4 s (deploy/nginx.conf), and the side that reuses a connection must give
# up on it before the side that closes it.
KEEP_ALIVE_S = 5

GRANIAN_FLAGS = (
    # Granian's default is its own RSGI; the app is ASGI, and `asgi` (not `asginl`) runs its
    # lifespan: pools opened, heap frozen, and closed again on shutdown.
    "--interface=asgi",
    "--loop=uvloop",
    # The proxy speaks HTTP/1.1 to the API; `auto` would also accept cleartext HTTP/2, which
    # nothing sends and nothing tests.
    "--http=1",
    # No WebSocket routes: upgrade requests are answered as plain HTTP.
    "--no-ws",
    # Off by default too; said out loud because X-Process-Time, X-Request-ID and the
    # slow-request log replace it (docs/deployment.md).
    "--no-access-log",
    # uvicorn's default; Granian's is 1024.
    "--backlog=2048",
    # Granian has no keep-alive timeout of its own: an idle HTTP/1 connection is closed when
    # the next request's headers do not arrive within this many milliseconds.
    f"--http1-header-read-timeout={KEEP_ALIVE_S * 1000}",
    # Without it Granian waits for a stuck request forever; after it, the worker is killed
    # without its lifespan shutdown, so it is shorter than the stop grace period around it.
    f"--workers-kill-timeout={SHUTDOWN_GRACE_S}",
    # A worker that dies (the OOM killer, a crash) is replaced, as uvicorn --workers does;
    # off by default, when Granian would stop altogether.
    "--respawn-failed-workers",
)


def granian_args(host: str, port: int) -> list[str]:
    """The arguments after `granian` that serve the API on host:port."""
    return [*GRANIAN_FLAGS, f"--host={host}", f"--port={port}", APP]
