from collections.abc import Callable
from dataclasses import dataclass

CONNECTIONS = 64


@dataclass(frozen=True)
class Scenario:
    """wrk runs `script` against the server named `server` (bench.phases.http)."""

    name: str
    group: str
    title: str
    server: str
    script: Callable[[int], str]  # invocation number -> Lua script
    connections: int = CONNECTIONS


def fixed(text: str) -> Callable[[int], str]:
    """The same script for every invocation."""
    return lambda _n: text
