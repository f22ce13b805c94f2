"""The system under test, on loopback: services from devstack, servers and workers as children.

Postgres runs with durable commits (fsync and synchronous_commit on), as in production: a
benchmark on a database that may lose acknowledged commits measures something else.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from api.server import GRANIAN_FLAGS
from devstack.processes import ChildProcess
from devstack.project import alembic_upgrade_head
from devstack.services import (
    LOOPBACK,
    PostgresService,
    RedisService,
    ensure_binaries,
    free_port,
)

BIN = Path(sys.executable).parent
STOP_TIMEOUT_S = 10.0

# The production server settings that docs/performance.md measures and the README, Dockerfile
# and docker-compose.yml ship: uvloop and httptools, no access log (the slow-request log and the
# X-Process-Time header take its place), keep-alive a little longer than a load balancer's.
KEEP_ALIVE_S = 5


def uvicorn_argv(app: str, port: int, workers: int = 1) -> list[str]:
    return [
        str(BIN / "uvicorn"),
        app,
        f"--host={LOOPBACK}",
        f"--port={port}",
        f"--workers={workers}",
        "--loop=uvloop",
        "--http=httptools",
        "--no-access-log",
        "--log-level=warning",
        f"--timeout-keep-alive={KEEP_ALIVE_S}",
        "--backlog=2048",
    ]


def granian_argv(app: str, port: int, workers: int = 1) -> list[str]:
    # The flags the API ships with (api.server), whichever app is measured.
    return [
        str(BIN / "granian"),
        *GRANIAN_FLAGS,
        f"--host={LOOPBACK}",
        f"--port={port}",
        f"--workers={workers}",
        "--log-level=warning",
        app,
    ]


# uvicorn_argv or granian_argv: (app, port, workers) -> argv
ServerArgv = Callable[[str, int, int], list[str]]

# The API's pool as the README and docker-compose.yml ship it.
PRODUCTION_POOL = {"DB_POOL_MIN_SIZE": "4", "DB_POOL_MAX_SIZE": "10"}
# The server the API ships with (api.server, the Dockerfile): every app here runs on it, hello
# world included, so that each ratio compares like with like; uvicorn is measured beside it.
PRODUCTION_SERVER: ServerArgv = granian_argv


class BenchError(RuntimeError):
    """The system under test could not be started or died."""


@dataclass
class Child:
    """A server or worker we started, in a process group of its own so that it stops whole."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str]
    process: ChildProcess | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = ChildProcess(self.argv, self.env, log).start()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.running()

    def check(self) -> None:
        if self.process is not None and not self.process.running():
            tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
            raise BenchError(
                f"{self.name} exited with status {self.process.returncode}:\n" + "\n".join(tail)
            )

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None:
            return
        self.process.stop(STOP_TIMEOUT_S, sig)
        self.process = None

    def kill(self) -> None:
        """SIGKILL the whole group: a crash, with no chance to finish anything."""
        self.stop(signal.SIGKILL)


@dataclass
class Server(Child):
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def wait_ready(self, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as response:  # noqa: S310 -- our loopback URL
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as error:
                error.close()
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} did not answer {path} within {timeout:g}s")
            time.sleep(0.1)


@dataclass
class Stack:
    """Postgres, Redis and the mail sink, plus every server and worker started on top."""

    root: Path
    postgres: PostgresService
    redis: RedisService
    mail: Child
    maildir: Path
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)

    def server(
        self,
        name: str,
        argv_for: ServerArgv,
        app: str,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        ready_path: str = "/healthz",
    ) -> Server:
        port = free_port()
        server = Server(
            name=name,
            argv=argv_for(app, port, workers),
            log_path=self.root / f"{name}.log",
            env={**self.env, **(env or {})},
            port=port,
        )
        self.children.append(server)
        server.start()
        server.wait_ready(ready_path)
        return server

    def worker(self, name: str, settings: str, env: Mapping[str, str] | None = None) -> Child:
        return self.child(name, [str(BIN / "arq"), settings], env)

    def child(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> Child:
        """Any other program, logging to the run directory, stopped with the stack."""
        child = Child(
            name=name,
            argv=argv,
            log_path=self.root / f"{name}.log",
            env={**self.env, **(env or {})},
        )
        self.children.append(child)
        child.start()
        return child

    def stop_children(self) -> None:
        """Stops every server and worker started so far; the services stay up."""
        for child in reversed(self.children):
            child.stop()

    def check(self) -> None:
        for child in self.children:
            if child.process is not None:
                child.check()

    def mail_count(self) -> int:
        try:
            return len(os.listdir(self.maildir / "new"))
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.mail.stop()
        self.redis.stop()
        self.postgres.stop()


def start_stack(root: Path, extra_env: Mapping[str, str]) -> Stack:
    """Services on free loopback ports, migrated; every child inherits env pointing at them."""
    ensure_binaries()
    root.mkdir(parents=True, exist_ok=True)
    # As root, Postgres runs as another user, who must be able to enter the directory.
    root.chmod(0o711)
    postgres = PostgresService(
        root / "postgres",
        free_port(),
        fsync=True,
        settings={
            "synchronous_commit": "on",
            # Pools of every server in the run, plus a connection per request for the claim
            # that measures exactly that.
            "max_connections": "400",
            "shared_buffers": "256MB",
        },
    )
    redis = RedisService(root / "redis", free_port())
    maildir = root / "mail"
    mail_port = free_port()
    env = {
        **os.environ,
        **extra_env,
        "DATABASE_URL": postgres.url,
        "REDIS_URL": redis.url,
        "SMTP_URL": f"smtp://{LOOPBACK}:{mail_port}",
    }
    mail = Child(
        name="mailsink",
        argv=[
            sys.executable,
            "-m",
            "devstack.mailsink",
            f"--port={mail_port}",
            f"--maildir={maildir}",
        ],
        log_path=root / "mailsink.log",
        env=env,
    )
    stack = Stack(root=root, postgres=postgres, redis=redis, mail=mail, maildir=maildir, env=env)
    try:
        postgres.start()
        redis.start()
        mail.start()
        alembic_upgrade_head(env, capture=True)
        wait_for_port(mail_port, mail)
    except BaseException:
        stack.close()
        raise
    return stack


def wait_for_port(port: int, child: Child, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        child.check()
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((LOOPBACK, port)) == 0:
                return
        if time.monotonic() > deadline:
            raise BenchError(f"{child.name} did not listen on port {port} within {timeout:g}s")
        time.sleep(0.05)


def _process_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, CPU ticks, resident pages) of every live process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            statm = Path(f"/proc/{entry}/statm").read_text()
        except OSError:
            continue
        # After the command in parentheses: state, ppid, ..., utime (12th), stime (13th), then
        # cutime and cstime: the CPU of children it has reaped (Postgres backends that exited).
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry)] = (
            int(fields[1]),
            sum(int(value) for value in fields[11:15]),
            int(statm.split()[1]),
        )
    return table


def _tree(table: dict[int, tuple[int, int, int]], root: int) -> list[int]:
    """root and its descendants (Postgres backends call setsid, so process groups do not do)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append(pid)
            todo.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(root: int) -> float:
    """User plus system CPU of a live process and its live descendants, and of the children
    they reaped, in seconds."""
    table = _process_table()
    return sum(table[pid][1] for pid in _tree(table, root)) / os.sysconf("SC_CLK_TCK")


def tree_rss_bytes(root: int) -> int:
    table = _process_table()
    return sum(table[pid][2] for pid in _tree(table, root)) * os.sysconf("SC_PAGE_SIZE")


def run_quiet(argv: Sequence[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    return (result.stdout or result.stderr).strip()
