"""The ARQ worker: `arq worker.Settings` runs `WorkerSettings`."""

from worker.settings import WorkerSettings

# The name the `arq worker.Settings` command line (Dockerfile, compose, docs) has always used.
Settings = WorkerSettings

__all__ = ["Settings", "WorkerSettings"]
