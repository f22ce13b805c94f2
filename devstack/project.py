"""The project's own commands that the local stack and the tests run: migrations, demo data."""

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class CommandError(RuntimeError):
    """A project command failed."""


def alembic_upgrade_head(env: Mapping[str, str], *, capture: bool = False) -> None:
    """`alembic upgrade head` from the repository root, against env's DATABASE_URL.

    With `capture`, the output is kept out of the terminal and put in the error instead.
    """
    # The console script rather than `python -m alembic`, so that the repository's alembic/
    # directory (migrations, first on sys.path when run from here) cannot shadow the package.
    script = Path(sys.executable).parent / "alembic"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "alembic"]
    result = subprocess.run(
        [*argv, "upgrade", "head"],
        cwd=REPO_ROOT,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=capture,
        text=True,
        process_group=0,
        check=False,
    )
    if result.returncode != 0:
        output = f":\n{result.stdout}{result.stderr}" if capture else " (output above)"
        raise CommandError(f"alembic upgrade head failed with status {result.returncode}{output}")


def demo_seed(env: Mapping[str, str]) -> str:
    """Run `ordersctl demo-seed` and return the demo client's API key, its last stdout line."""
    result = subprocess.run(
        [sys.executable, "-m", "ordersctl", "demo-seed"],
        cwd=REPO_ROOT,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        process_group=0,
        check=False,
    )
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not lines:
        raise CommandError(
            f"ordersctl demo-seed failed with status {result.returncode} "
            f"(stdout: {result.stdout.strip() or 'empty'})"
        )
    for line in lines[:-1]:
        print(line, flush=True)
    return lines[-1]
