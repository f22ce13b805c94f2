"""`python -m devstack run | services | ensure-binaries`: the local stack behind `make run`.

`run` starts Postgres, Redis and the mail sink (each unless DATABASE_URL, REDIS_URL or SMTP_URL
points elsewhere), migrates, seeds demo data, starts the API and the worker, and stops it all
in reverse order on Ctrl-C or SIGTERM. `services` starts only the three services.
"""

import argparse
import hashlib
import os
import shlex
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from api.server import SHUTDOWN_GRACE_S, granian_args
from devstack.mailsink import MailSink, print_delivery
from devstack.processes import ChildProcess
from devstack.project import REPO_ROOT, CommandError, alembic_upgrade_head, demo_seed
from devstack.services import (
    LOOPBACK,
    MissingBinariesError,
    PostgresService,
    RedisService,
    Service,
    ServiceError,
    ensure_binaries,
    port_is_free,
    reachable_by_postgres,
)
from kit.settings import Settings

DEMO_ORDER = (
    '{"customer": {"email": "ada@example.com", "name": "Ada Lovelace"}, '
    '"items": [{"product_id": 1, "quantity": 2}]}'
)
# On SIGTERM the API drains requests in flight for api.server.SHUTDOWN_GRACE_S, and the worker
# lets running jobs finish for WORKER_SHUTDOWN_GRACE_S; each child is given that long plus this
# margin before it is killed.
CHILD_STOP_MARGIN_S = 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

Children = dict[str, ChildProcess]
Watched = list[tuple[str, Service]]


class StopRequested(BaseException):
    """A stop signal arrived: leave whatever is under way and shut down in order.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it.
    """


class StackError(RuntimeError):
    """The stack cannot start or keep running."""


def _say(message: str) -> None:
    print(f"devstack: {message}", flush=True)


def _request_stop(signum: int, frame: FrameType | None) -> None:
    # Only the first signal interrupts; cleanup then runs to the end (every wait in it is
    # bounded) instead of being cut short by an impatient second Ctrl-C.
    _ignore_stop_signals()
    raise StopRequested(signal.Signals(signum).name)


def _ignore_stop_signals() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _default_url(field: str) -> str:
    """The default of a URL setting in kit/settings.py, where the local stack listens."""
    # Imported here: `ensure-binaries` runs before anything else of the project is needed.
    from pydantic import SecretStr

    from kit.settings import Settings

    default = Settings.model_fields[field].default
    return default.get_secret_value() if isinstance(default, SecretStr) else str(default)


def _require_free(port: int, what: str, instead: str) -> None:
    if not port_is_free(port):
        raise StackError(
            f"port {port}, where {what} would listen, is taken (by a previous devstack still "
            f"running, or a system service): stop that, or {instead}"
        )


def _postgres_data_dir(data_root: Path) -> Path:
    """data_root/pg, unless the account PostgreSQL runs as cannot reach it (a repo under /root).

    The fallback is under /var/lib, which only root may write to, one per data_root.
    """
    if reachable_by_postgres(data_root):
        return data_root / "pg"
    digest = hashlib.sha256(str(data_root).encode()).hexdigest()[:12]
    fallback = Path("/var/lib/devstack") / f"pg-{digest}"
    _say(f"user postgres cannot enter {data_root}; keeping Postgres data in {fallback} instead")
    return fallback


def _start_services(stack: ExitStack, data_root: Path, env: dict[str, str]) -> Watched:
    """Start what the environment does not provide; point env at it; stop it when stack closes."""
    data_root.mkdir(parents=True, exist_ok=True)
    own_postgres = not os.environ.get("DATABASE_URL")
    own_redis = not os.environ.get("REDIS_URL")
    ensure_binaries(postgres=own_postgres, redis=own_redis)
    watched: Watched = []

    if own_postgres:
        default = urlsplit(_default_url("database_url"))
        port = default.port or 5432
        _require_free(port, "Postgres", "set DATABASE_URL to use another server")
        postgres = PostgresService(
            _postgres_data_dir(data_root),
            port,
            user=default.username or "orders",
            password=default.password or "orders",
            database=default.path.lstrip("/") or "orders",
        )
        _say(f"starting Postgres on port {port}, data and log in {postgres.data_dir}")
        stack.callback(_stop_service, "Postgres", postgres)
        postgres.start()
        env["DATABASE_URL"] = postgres.url
        watched.append(("Postgres", postgres))

    if own_redis:
        port = urlsplit(_default_url("redis_url")).port or 6379
        _require_free(port, "Redis", "set REDIS_URL to use another server")
        redis = RedisService(data_root / "redis", port)
        _say(f"starting Redis on port {port}, log in {redis.data_dir}")
        stack.callback(_stop_service, "Redis", redis)
        redis.start()
        env["REDIS_URL"] = redis.url
        watched.append(("Redis", redis))

    if not os.environ.get("SMTP_URL"):
        port = urlsplit(_default_url("smtp_url")).port or 1025
        _require_free(port, "the mail sink", "set SMTP_URL to use another SMTP server")
        sink = MailSink(data_root / "mail", port, on_delivery=print_delivery)
        _say(f"starting the mail sink on port {port}, keeping messages in {data_root / 'mail'}")
        stack.callback(_stop_service, "the mail sink", sink)
        sink.start()
        env["SMTP_URL"] = sink.url
        watched.append(("the mail sink", sink))

    return watched


def _stop_service(name: str, service: Service) -> None:
    if service.running:
        _say(f"stopping {name}")
    service.stop()


def _spawn(name: str, argv: Sequence[str], env: dict[str, str]) -> ChildProcess:
    _say(f"starting the {name}: {shlex.join(argv)}")
    # A process group of its own: a Ctrl-C in the terminal reaches only us, and we stop the
    # children in order. Its output is ours.
    return ChildProcess(argv, env).start()


def _stop_child(name: str, child: ChildProcess, grace_s: float) -> None:
    if not child.running():
        return
    _say(f"stopping the {name}")
    timeout_s = grace_s + CHILD_STOP_MARGIN_S
    if not child.stop(timeout_s):
        _say(f"the {name} did not stop within {timeout_s:g}s and was killed")


def _check_alive(children: Children, watched: Watched) -> None:
    for name, child in children.items():
        if not child.running():
            raise StackError(f"the {name} exited unexpectedly with status {child.returncode}")
    for name, service in watched:
        if not service.running:
            raise StackError(f"{name} stopped unexpectedly (see its log)")


def _wait_until_ready(url: str, children: Children, watched: Watched, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_answer = "no answer yet"
    while True:
        _check_alive(children, watched)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 -- our http URL
                if response.status == 200:
                    return
                last_answer = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            last_answer = f"HTTP {error.code}"
            error.close()
        except (urllib.error.URLError, OSError) as error:
            last_answer = str(error)
        if time.monotonic() > deadline:
            raise StackError(f"{url} did not answer 200 within {timeout:g}s ({last_answer})")
        time.sleep(0.25)


def _supervise(children: Children, watched: Watched) -> None:
    """Return never: wait for a stop signal, or raise when something dies."""
    while True:
        _check_alive(children, watched)
        time.sleep(0.5)


def _describe_services(env: dict[str, str], data_root: Path, watched: Watched) -> list[str]:
    names = {name for name, _ in watched}
    lines = [
        f"Postgres:  {env['DATABASE_URL']}"
        if "Postgres" in names
        else "Postgres:  from DATABASE_URL, not managed by devstack",
        f"Redis:     {env['REDIS_URL']}"
        if "Redis" in names
        else "Redis:     from REDIS_URL, not managed by devstack",
    ]
    if "the mail sink" in names:
        lines.append(
            f"Mail sink: {env['SMTP_URL']}, keeps every message as one file in "
            f"{data_root / 'mail' / 'new'}"
        )
    else:
        lines.append("Mail:      sent to SMTP_URL, not managed by devstack")
    return lines


def _run(args: argparse.Namespace, stack: ExitStack) -> None:
    data_root: Path = args.data_dir.absolute()
    env = dict(os.environ)
    env.setdefault("LOG_FORMAT", "console")
    # Webhooks to a receiver on this machine (http://127.0.0.1:...), as development needs.
    env.setdefault("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
    _require_free(args.api_port, "the API", "choose another with --api-port")
    watched = _start_services(stack, data_root, env)

    _say("migrating the database: alembic upgrade head")
    alembic_upgrade_head(env)
    _say("seeding demo data: ordersctl demo-seed")
    api_key = demo_seed(env)

    api_url = f"http://{LOOPBACK}:{args.api_port}"
    children: Children = {}
    python = sys.executable
    # The production server and flags, so that what runs here is what ships; `uvicorn
    # api.main:app --reload` remains for editing with automatic restarts.
    api_argv = [python, "-m", "granian", *granian_args(LOOPBACK, args.api_port)]
    children["API"] = _spawn("API", api_argv, env)
    stack.callback(_stop_child, "API", children["API"], SHUTDOWN_GRACE_S)
    children["worker"] = _spawn("worker", [python, "-m", "arq", "worker.Settings"], env)
    worker_grace_s = float(Settings().worker_shutdown_grace_s)
    stack.callback(_stop_child, "worker", children["worker"], worker_grace_s)
    _wait_until_ready(f"{api_url}/readyz", children, watched, args.ready_timeout)

    curl = shlex.join(
        [
            "curl",
            "-sS",
            "-X",
            "POST",
            f"{api_url}/v1/orders",
            "-H",
            f"Authorization: Bearer {api_key}",
            "-H",
            "Content-Type: application/json",
            "-d",
            DEMO_ORDER,
        ]
    )
    banner = [
        "",
        f"The orders backend is running at {api_url}",
        f"Demo API key: {api_key}",
        "",
        "Place an order:",
        f"  {curl}",
        "",
        f"Operator console: {api_url}/console (sign in with the key of",
        "  `ordersctl clients create NAME --admin`; the demo key is not an admin's)",
        "",
        *_describe_services(env, data_root, watched),
        "",
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(banner), flush=True)
    _supervise(children, watched)


def _services(args: argparse.Namespace, stack: ExitStack) -> None:
    data_root: Path = args.data_dir.absolute()
    env = dict(os.environ)
    watched = _start_services(stack, data_root, env)
    exports = [
        f"export {name}={shlex.quote(env[name])}"
        for name in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")
        if name in env
    ]
    banner = ["", *_describe_services(env, data_root, watched), "", *exports, ""]
    print("\n".join([*banner, "Press Ctrl-C to stop.", ""]), flush=True)
    _supervise({}, watched)


def _run_until_stopped(args: argparse.Namespace) -> int:
    for signum in STOP_SIGNALS:
        signal.signal(signum, _request_stop)
    try:
        with ExitStack() as stack:
            try:
                if args.command == "run":
                    _run(args, stack)
                else:
                    _services(args, stack)
            finally:
                # From here on the stack closes, in reverse order of starting, uninterrupted.
                _ignore_stop_signals()
    except StopRequested as stop:
        _say(f"stopped ({stop})")
        return 0
    except (StackError, ServiceError, MissingBinariesError, CommandError) as error:
        print(f"devstack: {error}", file=sys.stderr, flush=True)
        return 1
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="services, migrations, demo data, API and worker, until Ctrl-C"
    )
    run.add_argument("--api-port", type=int, default=8000, help="API port (%(default)s)")
    run.add_argument(
        "--ready-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for GET /readyz to answer 200 (%(default)s)",
    )
    services = commands.add_parser("services", help="only Postgres, Redis and the mail sink")
    for command in (run, services):
        command.add_argument(
            "--data-dir",
            type=Path,
            default=REPO_ROOT / ".devdata",
            help="where the services keep data and logs (%(default)s)",
        )
    commands.add_parser(
        "ensure-binaries", help="install redis-server and PostgreSQL with apt-get if missing"
    )
    args = parser.parse_args(argv)

    if args.command == "ensure-binaries":
        try:
            ensure_binaries()
        except MissingBinariesError as error:
            print(f"devstack: {error}", file=sys.stderr)
            return 1
        return 0
    return _run_until_stopped(args)


if __name__ == "__main__":
    sys.exit(main())
