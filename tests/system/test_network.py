"""The hosts of the multi-host run (tests/system/network.py): what a partition cuts, and the
clean-up after a run that was killed before it could clean up itself."""

import subprocess
import time

import pytest

from tests.system.network import Network, ip, namespaces_usable, remove_leftovers


@pytest.fixture
def usable() -> None:
    if reason := namespaces_usable():
        pytest.skip(reason)


def can_connect(network: Network, host: str, address: str) -> bool:
    """Whether `host` reaches `address` (a TCP connection refused counts: the packet got there)."""
    probe = (
        "import socket\n"
        "s = socket.socket(); s.settimeout(1)\n"
        f"print(s.connect_ex(({address!r}, 9)))\n"
    )
    result = subprocess.run(
        ["ip", "netns", "exec", network.netns(host), "python3", "-c", probe],
        capture_output=True,
        text=True,
        check=True,
    )
    # 111 is ECONNREFUSED: the other host answered; anything else (a timeout) is no route.
    return result.stdout.strip() == "111"


@pytest.mark.usefixtures("usable")
def test_a_host_cut_off_reaches_nobody_until_it_is_reconnected() -> None:
    network = Network()
    try:
        network.create()
        network.add("a", 2)
        network.add("b", 3)
        assert can_connect(network, "a", network.hosts["b"])
        network.cut("b")
        assert not can_connect(network, "a", network.hosts["b"])
        network.reconnect("b")
        assert can_connect(network, "a", network.hosts["b"])
    finally:
        network.close()
    assert network.netns("a") not in ip("netns", "list")


@pytest.mark.usefixtures("usable")
def test_the_namespaces_and_processes_of_a_killed_run_are_removed() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    # A run whose test process no longer exists, with a server still running on one host.
    leftover = Network(tag=str(gone.pid))
    leftover.create()
    leftover.add("host", 2)
    server = subprocess.Popen(["ip", "netns", "exec", leftover.netns("host"), "sleep", "600"])
    time.sleep(0.2)

    remove_leftovers()

    assert server.wait(10) < 0, "the leftover server was not killed"
    names = ip("netns", "list")
    assert leftover.netns("host") not in names
    assert leftover.switch not in names
    assert f"mh{gone.pid}" not in ip("-o", "link", "show")
