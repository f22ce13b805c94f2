"""PostgreSQL and Redis as child processes on loopback, each in its own data directory and port.

A service can be stopped, killed and started again on the same port and data directory: the
fault-injection tests do exactly that to the servers under a running application.
"""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import redis

LOOPBACK = "127.0.0.1"
# initdb and postgres refuse to run as root. As root we run them as this account, the one
# Debian's postgresql package creates.
POSTGRES_OS_USER = "postgres"
# The bootstrap superuser of clusters made here; the application connects as its own role.
POSTGRES_SUPERUSER = "postgres"
POSTGRES_PROGRAMS = ("initdb", "postgres", "pg_isready", "psql")


class MissingBinariesError(RuntimeError):
    """A server program is not installed and cannot be installed from here."""


class ServiceError(RuntimeError):
    """A service failed to start, stop or answer."""


class Service(Protocol):
    """What the supervisor and the fault-injection tests need from any local service."""

    @property
    def url(self) -> str: ...

    @property
    def running(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def kill(self) -> None: ...


def _wait_until_group_gone(process_group: int, timeout: float = 10.0) -> None:
    """Waits until no live process is left in the group (zombies do not count)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _live_members(process_group):
        time.sleep(0.02)


def _live_members(process_group: int) -> bool:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # it exited while we looked
        # Fields after the parenthesised command name: state, ppid, pgrp, ...
        state, _ppid, pgrp = stat.rpartition(")")[2].split()[:3]
        if int(pgrp) == process_group and state != "Z":
            return True
    return False


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # Servers set SO_REUSEADDR too, so a port left in TIME_WAIT by a stopped server counts
        # as free, while one with a listener (on loopback or on every address) does not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _running_as_root() -> bool:
    return os.geteuid() == 0


def find_postgres_bindir() -> Path | None:
    """The directory holding initdb, postgres, pg_isready and psql of one PostgreSQL version.

    Looked up in $PG_BINDIR, then next to a `postgres` on PATH, then in Debian's
    /usr/lib/postgresql/<major>/bin, newest major first. Debian puts only wrappers on PATH.
    """
    candidates: list[Path] = []
    if override := os.environ.get("PG_BINDIR"):
        candidates.append(Path(override))
    if on_path := shutil.which("postgres"):
        candidates.append(Path(on_path).resolve().parent)
    candidates.extend(
        sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_major_version, reverse=True)
    )
    for bindir in candidates:
        if all((bindir / program).is_file() for program in POSTGRES_PROGRAMS):
            return bindir
    return None


def _major_version(bindir: Path) -> int:
    name = bindir.parent.name
    return int(name) if name.isdigit() else 0


def find_pgbouncer() -> str | None:
    # Debian installs it in /usr/sbin, which is not on every user's PATH.
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


def find_nginx() -> str | None:
    # Debian installs it in /usr/sbin, which is not on every user's PATH.
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/bin")


def ensure_binaries(
    *,
    postgres: bool = True,
    redis: bool = True,
    pgbouncer: bool = False,
    sentinel: bool = False,
    nginx: bool = False,
) -> None:
    """Install redis-server and PostgreSQL (and, when asked, pgbouncer, redis-sentinel and
    nginx) with apt-get when missing, if we are root.

    Raises MissingBinariesError, naming the packages, when they are missing and cannot be
    installed from here.
    """
    packages: list[str] = []
    if redis and shutil.which("redis-server") is None:
        packages.append("redis-server")
    if postgres and find_postgres_bindir() is None:
        packages.append("postgresql")
    if pgbouncer and find_pgbouncer() is None:
        packages.append("pgbouncer")
    if sentinel and shutil.which("redis-sentinel") is None:
        packages.append("redis-sentinel")
    if nginx and find_nginx() is None:
        packages.append("nginx")
    if packages:
        if not _running_as_root() or shutil.which("apt-get") is None:
            raise MissingBinariesError(
                f"missing {', '.join(packages)}: install {'it' if len(packages) == 1 else 'them'} "
                "(on Debian or Ubuntu: "
                f"sudo apt-get install -y {' '.join(packages)}), or run this as root to have "
                "it done for you"
            )
        _apt_install(packages)
        if redis and shutil.which("redis-server") is None:
            raise MissingBinariesError("redis-server is still not on PATH after installing it")
        if postgres and find_postgres_bindir() is None:
            raise MissingBinariesError(
                f"PostgreSQL programs ({', '.join(POSTGRES_PROGRAMS)}) are still not found "
                "after installing postgresql; set PG_BINDIR to their directory"
            )
        if pgbouncer and find_pgbouncer() is None:
            raise MissingBinariesError("pgbouncer is still not found after installing it")
        if sentinel and shutil.which("redis-sentinel") is None:
            raise MissingBinariesError("redis-sentinel is still not on PATH after installing it")
        if nginx and find_nginx() is None:
            raise MissingBinariesError("nginx is still not found after installing it")
    if (postgres or pgbouncer) and _running_as_root():
        _ensure_os_user(POSTGRES_OS_USER)


def _apt_install(packages: Sequence[str]) -> None:
    print(f"devstack: installing {' '.join(packages)} with apt-get", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Debian's packages start their daemon on install, and postgresql's on port 5432 too. A
    # policy-rc.d that exits 101 forbids that, as Debian's own container images do.
    policy = Path("/usr/sbin/policy-rc.d")
    we_wrote_policy = not policy.exists()
    if we_wrote_policy:
        policy.write_text("#!/bin/sh\n# written by devstack while it installs packages\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdin=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
            check=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    finally:
        if we_wrote_policy:
            policy.unlink(missing_ok=True)


def _ensure_os_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        print(f"devstack: creating system user {name}", file=sys.stderr, flush=True)
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            check=True,
        )


@dataclass(frozen=True)
class OsUser:
    name: str
    uid: int
    gid: int


def _postgres_os_user() -> OsUser | None:
    """Whom PostgreSQL runs as: None means ourselves, which is fine unless we are root."""
    if not _running_as_root():
        return None
    try:
        entry = pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        raise MissingBinariesError(
            f"PostgreSQL cannot run as root and there is no {POSTGRES_OS_USER!r} user: "
            "run `python -m devstack ensure-binaries` as root first"
        ) from None
    return OsUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def reachable_by_postgres(directory: Path) -> bool:
    """Whether the account PostgreSQL runs as can enter `directory` (and so every parent)."""
    os_user = _postgres_os_user()
    if os_user is None:
        return True
    result = subprocess.run(
        ["test", "-x", str(directory)],
        user=os_user.uid,
        group=os_user.gid,
        extra_groups=[],
        cwd="/",
        check=False,
    )
    return result.returncode == 0


class _ServerProcess:
    """One server process that we own and reap ourselves.

    It runs in its own process group so that a Ctrl-C in the terminal reaches only the
    supervisor, which stops the services in order, and so that kill() takes its helpers along.
    """

    name = "server"

    def __init__(self, data_dir: Path, port: int, *, netns: str | None = None) -> None:
        self.data_dir = data_dir.absolute()
        self.port = port
        # The network namespace to run in (`ip netns exec`), as on a host of its own; None for
        # ours. The programs that wait for it and talk to it run in ours, over its address.
        self.netns = netns
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def kill(self) -> None:
        """SIGKILL the server and its helpers: a crash, with no chance to clean up."""
        if self._process is None:
            return
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        # The server's helpers (Postgres backends) die a moment after it, and until they have,
        # a new server on the same data directory refuses to start ("pre-existing shared memory
        # block is still in use").
        _wait_until_group_gone(self._process.pid)
        self._process = None

    def _spawn(self, argv: Sequence[str], os_user: OsUser | None = None) -> None:
        if self.running:
            raise ServiceError(f"{self.name} on port {self.port} is already running")
        if self.netns is not None:
            # Entering a namespace takes root, so the switch to os_user comes after it.
            prefix = ["ip", "netns", "exec", self.netns]
            if os_user is not None:
                prefix += [
                    "setpriv",
                    f"--reuid={os_user.uid}",
                    f"--regid={os_user.gid}",
                    "--clear-groups",
                ]
            argv, os_user = [*prefix, *argv], None
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                process_group=0,
                user=None if os_user is None else os_user.uid,
                group=None if os_user is None else os_user.gid,
                extra_groups=None if os_user is None else [],
            )

    def _signal_and_wait(self, signum: signal.Signals, timeout: float) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signum)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                print(
                    f"devstack: {self.name} did not stop within {timeout:g}s, killing it",
                    file=sys.stderr,
                    flush=True,
                )
                self.kill()
        self._process = None

    def _check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            code = self._process.returncode
            self._process = None
            raise ServiceError(
                f"{self.name} exited with status {code} while starting; "
                f"last lines of {self.log_path}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_identifier(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


class PostgresService(_ServerProcess):
    """A throwaway PostgreSQL cluster in `data_dir`/data, listening on `host`:`port` only
    (127.0.0.1 by default).

    The first start runs initdb; every start makes sure the application role and database
    exist. Anyone on loopback, or in the `clients` network, may connect without a password
    (trust); unix sockets are off.
    With fsync=False it is faster and still keeps every commit when the server is killed; only
    a crash of the machine itself could lose data.
    """

    name = "postgres"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        fsync: bool = True,
        user: str = "orders",
        # The well-known password of a throwaway cluster, as in kit/settings.py's default.
        password: str = "orders",  # noqa: S107
        database: str = "orders",
        settings: Mapping[str, str] | None = None,
        host: str = LOOPBACK,
        clients: str | None = None,
        netns: str | None = None,
    ) -> None:
        super().__init__(data_dir, port, netns=netns)
        self.host = host
        # A network (CIDR) whose hosts may connect too, written to pg_hba.conf by initdb.
        self.clients = clients
        self.fsync = fsync
        self.user = user
        self.password = password
        self.database = database
        # Extra `-c name=value` server settings, for tests that need, say, a short timeout.
        self.settings = dict(settings or {})
        self._bindir: Path | None = None

    @property
    def cluster_dir(self) -> Path:
        return self.data_dir / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_postgres_bindir()
            if self._bindir is None:
                raise MissingBinariesError(
                    "PostgreSQL is not installed: run `python -m devstack ensure-binaries`"
                )
        return self._bindir

    def start(self, timeout: float = 60.0) -> None:
        os_user = _postgres_os_user()
        self._prepare_data_dir(os_user)
        if not (self.cluster_dir / "PG_VERSION").exists():
            self._initdb(os_user)
        self._spawn([str(self.bindir / "postgres"), *self._server_options()], os_user)
        self._wait_until_accepting(timeout)
        self._ensure_role_and_database()

    def stop(self, timeout: float = 30.0) -> None:
        # SIGINT is PostgreSQL's fast shutdown, what `pg_ctl stop -m fast` sends: open
        # transactions roll back, clients are disconnected, a checkpoint is written. We send
        # it ourselves because the server is our child and we must reap it anyway.
        self._signal_and_wait(signal.SIGINT, timeout)

    def psql(self, sql: str, *, database: str | None = None) -> str:
        """Run `sql` as the superuser and return psql's unaligned, tuples-only output."""
        result = subprocess.run(
            [
                str(self.bindir / "psql"),
                "--no-psqlrc",
                "--quiet",
                "--no-align",
                "--tuples-only",
                "--set=ON_ERROR_STOP=1",
                f"--host={self.host}",
                f"--port={self.port}",
                f"--username={POSTGRES_SUPERUSER}",
                f"--dbname={database or self.database}",
                f"--command={sql}",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"psql failed on port {self.port}: {result.stderr.strip()}")
        return result.stdout

    def _server_options(self) -> list[str]:
        settings = {
            "port": str(self.port),
            "listen_addresses": self.host,
            "unix_socket_directories": "",
            "fsync": "on" if self.fsync else "off",
        }
        if not self.fsync:
            # Torn pages, too, only happen when the machine crashes. synchronous_commit stays
            # on: without it a killed server loses commits it has acknowledged, which a real
            # one never does, and the fault-injection tests would fail for the wrong reason.
            settings["full_page_writes"] = "off"
        settings |= self.settings
        options = ["-D", str(self.cluster_dir)]
        for name, value in settings.items():
            options += ["-c", f"{name}={value}"]
        return options

    def _prepare_data_dir(self, os_user: OsUser | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os_user is None:
            return
        if not reachable_by_postgres(self.data_dir.parent):
            raise ServiceError(
                f"PostgreSQL runs as user {os_user.name}, who cannot enter "
                f"{self.data_dir.parent}: choose a data directory under a path every user may "
                "traverse (such as /tmp or /var/tmp), or `chmod o+x` its parents"
            )
        if self.data_dir.stat().st_uid != os_user.uid:
            for path in [self.data_dir, *self.data_dir.rglob("*")]:
                os.chown(path, os_user.uid, os_user.gid, follow_symlinks=False)

    def _initdb(self, os_user: OsUser | None) -> None:
        argv = [
            str(self.bindir / "initdb"),
            f"--pgdata={self.cluster_dir}",
            f"--username={POSTGRES_SUPERUSER}",
            # pg_hba.conf is rewritten below; this only silences initdb's warning about trust.
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ]
        if not self.fsync:
            argv.append("--no-sync")
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                check=False,
                user=None if os_user is None else os_user.uid,
                group=None if os_user is None else os_user.gid,
                extra_groups=None if os_user is None else [],
            )
        if result.returncode != 0:
            raise ServiceError(
                f"initdb failed with status {result.returncode}; last lines of "
                f"{self.log_path}:\n{self.log_tail()}"
            )
        hba = self.cluster_dir / "pg_hba.conf"
        hba.write_text(
            "# Written by devstack: a throwaway cluster, reachable over TCP from loopback (and\n"
            "# from the clients' network, if any) only, where every role logs in without a\n"
            "# password.\n"
            "host all all 127.0.0.1/32 trust\n"
            + ("" if self.clients is None else f"host all all {self.clients} trust\n")
        )
        if os_user is not None:
            os.chown(hba, os_user.uid, os_user.gid)

    def _wait_until_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            ready = subprocess.run(
                [
                    str(self.bindir / "pg_isready"),
                    "--quiet",
                    f"--host={self.host}",
                    f"--port={self.port}",
                    f"--username={POSTGRES_SUPERUSER}",
                    "--dbname=postgres",
                    "--timeout=1",
                ],
                stdin=subprocess.DEVNULL,
                check=False,
            )
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceError(
                    f"postgres on port {self.port} did not accept connections within "
                    f"{timeout:g}s; last lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _ensure_role_and_database(self) -> None:
        role = _sql_identifier(self.user)
        self.psql(
            "DO $$ BEGIN "
            f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_sql_literal(self.user)}) "
            f"THEN CREATE ROLE {role} LOGIN PASSWORD {_sql_literal(self.password)}; "
            "END IF; END $$",
            database="postgres",
        )
        exists = self.psql(
            f"SELECT 1 FROM pg_database WHERE datname = {_sql_literal(self.database)}",  # noqa: S608 -- quoted above
            database="postgres",
        )
        if not exists.strip():
            self.psql(
                f"CREATE DATABASE {_sql_identifier(self.database)} OWNER {role}",
                database="postgres",
            )


class _RedisProtocolServer(_ServerProcess):
    """A server that speaks Redis's protocol on `host`:`port`: redis-server or redis-sentinel."""

    @property
    def protected_mode(self) -> str:
        # Protected mode refuses clients from other hosts to a server without a password; on
        # any address but loopback, other hosts are who it is bound for (a test's network).
        return "yes" if self.host == LOOPBACK else "no"

    def __init__(
        self, data_dir: Path, port: int, *, host: str = LOOPBACK, netns: str | None = None
    ) -> None:
        super().__init__(data_dir, port, netns=netns)
        self.host = host

    def stop(self, timeout: float = 10.0) -> None:
        # SIGTERM is Redis's orderly shutdown, the same as the SHUTDOWN command; with
        # persistence off it saves nothing.
        self._signal_and_wait(signal.SIGTERM, timeout)

    def client(self) -> redis.Redis:
        return redis.Redis(
            host=self.host, port=self.port, socket_timeout=2, socket_connect_timeout=2
        )

    def _wait_until_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                with self.client() as client:
                    if client.ping():
                        return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceError(
                    f"{self.name} on port {self.port} did not answer PING within {timeout:g}s; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.05)


class RedisService(_RedisProtocolServer):
    """A redis-server on `host`:`port` that persists nothing: a restart comes back empty.

    With `replica_of` (host, port) it starts as a replica of that server, as a sentinel-watched
    pair needs; a sentinel may later promote it, or point it at another master.
    """

    name = "redis"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        host: str = LOOPBACK,
        replica_of: tuple[str, int] | None = None,
        netns: str | None = None,
    ) -> None:
        super().__init__(data_dir, port, host=host, netns=netns)
        self.replica_of = replica_of

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise MissingBinariesError(
                "redis-server is not installed: run `python -m devstack ensure-binaries`"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        replica = [] if self.replica_of is None else ["--replicaof", *map(str, self.replica_of)]
        self._spawn(
            [
                binary,
                *replica,
                "--port",
                str(self.port),
                "--bind",
                self.host,
                "--protected-mode",
                self.protected_mode,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.data_dir),
                "--daemonize",
                "no",
                # Log to stdout, which goes to redis.log.
                "--logfile",
                "",
            ]
        )
        self._wait_until_answering(timeout)

    def flushall(self) -> None:
        with self.client() as client:
            client.flushall()


class SentinelService(_RedisProtocolServer):
    """A redis-sentinel on `host`:`port` watching one master under `master_name`.

    Sentinels rewrite their configuration file as they learn the replicas, their peers and each
    failover, so the file is written on the first start only: a restarted sentinel remembers.
    `down_after_ms` and `failover_timeout_ms` are low by default so that a failover on loopback
    takes seconds (a production sentinel waits longer before it calls a master down).
    """

    name = "sentinel"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        master: tuple[str, int],
        master_name: str = "orders",
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        host: str = LOOPBACK,
        netns: str | None = None,
    ) -> None:
        super().__init__(data_dir, port, host=host, netns=netns)
        self.master = master
        self.master_name = master_name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """As REDIS_SENTINELS lists it."""
        return f"{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "sentinel.conf"

    def start(self, timeout: float = 15.0) -> None:
        binary = shutil.which("redis-sentinel")
        if binary is None:
            raise MissingBinariesError(
                "redis-sentinel is not installed: run `python -m devstack ensure-binaries`"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            master_host, master_port = self.master
            name = self.master_name
            self.config_path.write_text(
                f"port {self.port}\n"
                f"bind {self.host}\n"
                f"protected-mode {self.protected_mode}\n"
                "daemonize no\n"
                'logfile ""\n'
                f"dir {self.data_dir}\n"
                f"sentinel monitor {name} {master_host} {master_port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {name} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {name} 1\n"
            )
        self._spawn([binary, str(self.config_path)])
        self._wait_until_answering(timeout)

    def sees(self, *, replicas: int, other_sentinels: int) -> bool:
        """Whether this sentinel knows at least that many replicas of its master and other
        sentinels watching it: what it learns through the master within a few seconds."""
        with self.client() as client:
            fields = client.sentinel_master(self.master_name)
        return (
            int(fields["num-slaves"]) >= replicas
            and int(fields["num-other-sentinels"]) >= other_sentinels
        )

    def wait_until_sees(
        self, *, replicas: int, other_sentinels: int, timeout: float = 30.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while not self.sees(replicas=replicas, other_sentinels=other_sentinels):
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"the sentinel on {self.address} did not find {replicas} replicas and "
                    f"{other_sentinels} other sentinels within {timeout:g}s"
                )
            time.sleep(0.1)

    def master_address(self) -> tuple[str, int] | None:
        """Where this sentinel says the master is now."""
        with self.client() as client:
            answer = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        if not answer:
            return None
        host, port = answer
        return (host.decode() if isinstance(host, bytes) else str(host), int(port))


class PgBouncerService(_ServerProcess):
    """A pgbouncer on `host`:`port` in front of one Postgres database, transaction pooling by
    default, as the application is deployed behind one (docs/deployment.md).

    Clients log in as the database's user without a password (trust: loopback and tests only);
    pgbouncer logs in to Postgres with `password`. `connect_query` runs on every new server
    connection: the session settings a transaction pool cannot take from its clients (such as
    `SET statement_timeout = 5000`).
    """

    name = "pgbouncer"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        upstream: tuple[str, int],
        user: str = "orders",
        # The well-known password of a throwaway cluster, as PostgresService's.
        password: str = "orders",  # noqa: S107
        database: str = "orders",
        pool_mode: str = "transaction",
        default_pool_size: int = 20,
        max_client_conn: int = 500,
        connect_query: str | None = None,
        ignore_startup_parameters: Sequence[str] = (),
        host: str = LOOPBACK,
        netns: str | None = None,
    ) -> None:
        super().__init__(data_dir, port, netns=netns)
        self.upstream = upstream
        # Startup parameters to accept and drop rather than refuse (pgbouncer refuses any it
        # does not track, such as statement_timeout).
        self.ignore_startup_parameters = tuple(ignore_startup_parameters)
        self.user = user
        self.password = password
        self.database = database
        self.pool_mode = pool_mode
        self.default_pool_size = default_pool_size
        self.max_client_conn = max_client_conn
        self.connect_query = connect_query
        self.host = host

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "pgbouncer.ini"

    def start(self, timeout: float = 15.0) -> None:
        binary = find_pgbouncer()
        if binary is None:
            raise MissingBinariesError(
                "pgbouncer is not installed: run `python -m devstack ensure-binaries`"
            )
        # pgbouncer refuses to run as root: as root, it runs as PostgreSQL's account.
        os_user = _postgres_os_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if os_user is not None:
            for path in [self.data_dir, *self.data_dir.iterdir()]:
                os.chown(path, os_user.uid, os_user.gid, follow_symlinks=False)
        self._spawn([binary, str(self.config_path)], os_user)
        self._wait_until_accepting(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        # SIGINT is pgbouncer's safe shutdown: it waits for each client's transaction to end.
        self._signal_and_wait(signal.SIGINT, timeout)

    def _write_config(self) -> None:
        upstream_host, upstream_port = self.upstream
        server = (
            f"host={upstream_host} port={upstream_port} dbname={self.database} "
            f"user={self.user} password={self.password}"
        )
        if self.connect_query:
            server += " connect_query=" + _sql_literal(self.connect_query)
        (self.data_dir / "userlist.txt").write_text(f'"{self.user}" ""\n')
        self.config_path.write_text(
            "[databases]\n"
            f"{self.database} = {server}\n"
            "[pgbouncer]\n"
            f"listen_addr = {self.host}\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.data_dir / 'userlist.txt'}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.default_pool_size}\n"
            f"max_client_conn = {self.max_client_conn}\n"
            f"ignore_startup_parameters = {','.join(self.ignore_startup_parameters)}\n"
        )

    def _wait_until_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            with socket.socket() as sock:
                sock.settimeout(1)
                if sock.connect_ex((self.host, self.port)) == 0:
                    return
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceError(
                    f"pgbouncer on port {self.port} did not accept connections within "
                    f"{timeout:g}s; last lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.05)
