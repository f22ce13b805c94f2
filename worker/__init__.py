"""The ARQ worker: `arq worker.Settings` runs `WorkerSettings`."""

from worker.arq_worker import install
from worker.settings import WorkerSettings

# Before the command line builds its worker: it imports this package to find the settings.
install()

# The name the `arq worker.Settings` command line (Dockerfile, compose, docs) has always used.
Settings = WorkerSettings

__all__ = ["Settings", "WorkerSettings"]
