"""Hosts on one machine: a network namespace each, wired to one switch by veth pairs.

The switch is a bridge in a namespace of its own, so no firewall of the machine sees the
traffic; the test process joins the network as one more host from the root namespace (the
client, `CLIENT_ADDRESS`), so that it reaches every host directly. The machine has no netem: a
partition is a host's port on the switch set down, which cuts every connection of that host at
once, both ways, and leaves them to TCP's retransmissions until the port is up again.

Every namespace and link is named after the process that made it, so that `close()` (and
`remove_leftovers()`, after a run that was killed before it could clean up) removes only those.
"""

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.77.0"
PREFIX_LENGTH = 24
NETWORK = f"{SUBNET}.0/{PREFIX_LENGTH}"
CLIENT_ADDRESS = f"{SUBNET}.1"
NAMESPACE_PREFIX = "orders-mh"


def ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def namespaces_usable() -> str | None:
    """Why this machine cannot run the hosts (not root, no `ip netns`), or None if it can."""
    if os.geteuid() != 0:
        return "network namespaces and veth pairs need root (CI runs as root)"
    probe = f"{NAMESPACE_PREFIX}{os.getpid()}-probe"
    try:
        ip("netns", "add", probe)
    except (OSError, RuntimeError) as error:
        return f"`ip netns` is unavailable here: {error}"
    ip("netns", "delete", probe)
    return None


def remove_leftovers() -> None:
    """Namespaces of a run whose process is gone (killed before it could clean up), the
    servers still running in them, and their links."""
    for line in ip("netns", "list").splitlines():
        name = line.split()[0]
        if not name.startswith(NAMESPACE_PREFIX):
            continue
        owner = name.removeprefix(NAMESPACE_PREFIX).split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            for pid in ip("netns", "pids", name).split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            ip("netns", "delete", name)
    for line in ip("-o", "link", "show").splitlines():
        link = line.split(":")[1].strip().split("@")[0]
        owner = link.removeprefix("mh")
        if link.startswith("mh") and owner.isdigit() and not Path(f"/proc/{owner}").exists():
            ip("link", "delete", link)


@dataclass
class Network:
    """`add(name, number)` makes host `name` at 10.77.0.`number`; `netns(name)` is its
    namespace, for `ip netns exec`."""

    tag: str = field(default_factory=lambda: str(os.getpid()))
    hosts: dict[str, str] = field(default_factory=dict)  # name -> address
    _namespaces: list[str] = field(default_factory=list)
    _root_link: str | None = None

    @property
    def switch(self) -> str:
        return f"{NAMESPACE_PREFIX}{self.tag}-switch"

    def netns(self, host: str) -> str:
        return f"{NAMESPACE_PREFIX}{self.tag}-{host}"

    def create(self) -> None:
        self._add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "switch", "type", "bridge")
        ip("-n", self.switch, "link", "set", "switch", "up")
        # The client end of the test process, in the root namespace; its name must be unique
        # there, and at most 15 characters.
        self._root_link = f"mh{self.tag}"
        ip(
            "link", "add", self._root_link, "type", "veth",
            "peer", "name", "client", "netns", self.switch,
        )  # fmt: skip
        self._plug("client")
        ip("addr", "add", f"{CLIENT_ADDRESS}/{PREFIX_LENGTH}", "dev", self._root_link)
        ip("link", "set", self._root_link, "up")

    def add(self, host: str, number: int) -> str:
        address = f"{SUBNET}.{number}"
        namespace = self.netns(host)
        self._add_namespace(namespace)
        ip("-n", namespace, "link", "set", "lo", "up")
        ip(
            "link", "add", "eth0", "netns", namespace, "type", "veth",
            "peer", "name", host, "netns", self.switch,
        )  # fmt: skip
        self._plug(host)
        ip("-n", namespace, "addr", "add", f"{address}/{PREFIX_LENGTH}", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        self.hosts[host] = address
        return address

    def cut(self, host: str) -> None:
        """The host's port on the switch down: a partition, the host itself left running."""
        ip("-n", self.switch, "link", "set", "dev", host, "down")

    def reconnect(self, host: str) -> None:
        ip("-n", self.switch, "link", "set", "dev", host, "up")

    def pids(self, host: str) -> list[int]:
        """Every process running in the host's namespace."""
        return [int(pid) for pid in ip("netns", "pids", self.netns(host)).split()]

    def close(self) -> None:
        """Deletes every namespace (their veth ends with them) and the client's link."""
        for namespace in reversed(self._namespaces):
            try:
                ip("netns", "delete", namespace)
            except RuntimeError as error:
                print(f"network: {error}")
        self._namespaces.clear()
        if self._root_link is not None:
            # Gone already with its peer in the switch's namespace, unless that failed.
            subprocess.run(["ip", "link", "delete", self._root_link], capture_output=True)
            self._root_link = None

    def _add_namespace(self, namespace: str) -> None:
        ip("netns", "add", namespace)
        self._namespaces.append(namespace)

    def _plug(self, port: str) -> None:
        ip("-n", self.switch, "link", "set", "dev", port, "master", "switch")
        ip("-n", self.switch, "link", "set", "dev", port, "up")
