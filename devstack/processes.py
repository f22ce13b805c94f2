"""Child processes, each in a process group of its own, so that a signal reaches all of it.

`python -m devstack run` supervises the API and the worker with it, the benchmark its servers
and workers (bench/stack.py), and the tests the processes they signal and kill
(tests/processes.py). A server started with `--workers N` spawns N processes, which outlive a
parent killed alone: stopping signals the whole group, and its own group also keeps a Ctrl-C in
the terminal from reaching the children before the parent stops them in order.
"""

import contextlib
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from signal import SIGKILL, SIGTERM, Signals
from typing import IO

from devstack.project import REPO_ROOT


class ChildProcess:
    """`argv` run from the repository with `env`; its output to `output` (a file), or to ours."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        output: IO[bytes] | None = None,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(os.environ if env is None else env)
        self._output = output
        self._cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "ChildProcess":
        """Starts the process; again after it exited, as a restart."""
        assert not self.running(), "already running"
        self.process = subprocess.Popen(
            self.argv,
            cwd=self._cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=None if self._output is None else subprocess.STDOUT,
            process_group=0,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status once the process exited (a negative signal number if killed)."""
        return None if self.process is None else self.process.poll()

    def signal(self, signum: Signals) -> None:
        """The signal to the process alone, not to what it started."""
        assert self.process is not None
        self.process.send_signal(signum)

    def signal_group(self, signum: Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout_s)

    def stop(self, timeout_s: float, signum: Signals = SIGTERM) -> bool:
        """`signum` to the whole group, then SIGKILL to it if the process has not exited within
        `timeout_s`. True when it exited in time (or had already)."""
        if not self.running():
            return True
        self.signal_group(signum)
        try:
            self.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill_group()
            return False
        return True

    def kill_group(self) -> None:
        """SIGKILL to the whole group, and wait for the process: a crash, nothing cleaned up."""
        if self.process is None:
            return
        self.signal_group(SIGKILL)
        self.process.wait()
