"""Programs the benchmark runs that the project itself does not need: found on PATH or in their
Debian package's place, else installed with apt-get (the bench box runs as root)."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.stack import BenchError

# Makes invoke-rc.d refuse to start any daemon while a package is installed (postfix's, for
# smtp-sink): the benchmark starts what it needs itself, on free ports (.ci/run does the same).
_POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def _apt_install(package: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BenchError(f"{package} is missing: install it (`sudo apt-get install -y {package}`)")
    print(f"bench: installing {package} with apt-get", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    policy_written = False
    if not _POLICY_RC_D.exists():
        with tempfile.NamedTemporaryFile("w", dir=_POLICY_RC_D.parent, delete=False) as policy:
            policy.write("#!/bin/sh\nexit 101\n")
        Path(policy.name).chmod(0o755)
        Path(policy.name).rename(_POLICY_RC_D)
        policy_written = True
    try:
        for argv in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
        ):
            subprocess.run(argv, env=env, check=True, capture_output=True, timeout=600)
    finally:
        if policy_written:
            _POLICY_RC_D.unlink(missing_ok=True)


def _ensure(program: str, package: str, path: Path | None = None) -> str:
    def find() -> str | None:
        if path is not None and path.exists():
            return str(path)
        return shutil.which(program)

    found = find()
    if found is None:
        _apt_install(package)
        found = find()
    if found is None:
        raise BenchError(f"{program} is still missing after apt-get install {package}")
    return found


def ensure_wrk() -> str:
    return _ensure("wrk", "wrk")


def ensure_smtp_sink() -> str:
    """Postfix's smtp-sink: a mail server in C that accepts and drops every message. Only the
    program is used; the package's daemon is kept from starting and never started."""
    return _ensure("smtp-sink", "postfix", Path("/usr/sbin/smtp-sink"))


def pgbench(bindir: Path) -> str:
    """pgbench of the PostgreSQL in `bindir` (next to its initdb), the one the benchmark runs."""
    program = bindir / "pgbench"
    if not program.exists():
        raise BenchError(f"{program} is missing: it comes with the PostgreSQL server package")
    return str(program)
