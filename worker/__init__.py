"""The ARQ worker: `arq worker.Settings`."""

from worker.settings import Settings

__all__ = ["Settings"]
