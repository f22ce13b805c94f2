"""Which URLs webhooks may be sent to: https, and only to public addresses.

Checked when an endpoint is registered and again before every request, against the addresses
its host resolves to then; the request then goes to the address that was checked, so a name
that resolves elsewhere a moment later (DNS rebinding) cannot redirect it.
WEBHOOK_ALLOW_PRIVATE_NETWORKS=true allows plain http and any address (development, tests).
"""

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

_RESOLVE_TIMEOUT_S = 2.0


class DisallowedUrl(ValueError):
    """The URL is not one webhooks may be sent to; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request for a URL goes: the checked addresses, and the URL's own host and port."""

    url: SplitResult
    host: str
    port: int
    addresses: list[str]


def parse(url: str, *, allow_private: bool) -> SplitResult:
    """The URL split, or DisallowedUrl when its form is not allowed (before any lookup)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DisallowedUrl(f"not a valid URL ({exc})") from None
    allowed_schemes = {"https", "http"} if allow_private else {"https"}
    if parts.scheme not in allowed_schemes:
        raise DisallowedUrl("the URL must be https")
    if not parts.hostname:
        raise DisallowedUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise DisallowedUrl("the URL must not carry credentials")
    if parts.fragment:
        raise DisallowedUrl("the URL must not have a fragment")
    if port == 0:
        raise DisallowedUrl("the URL's port must not be 0")
    return parts


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # is_global leaves out private, loopback, link-local, shared (CGNAT), reserved and
    # unspecified addresses; multicast is no place for a request either.
    return ip.is_global and not ip.is_multicast


async def resolve(url: str, *, allow_private: bool) -> Target:
    """Where a request for `url` may go, or DisallowedUrl.

    Every address the host resolves to must be public: a name with a private address among
    its public ones is refused rather than tried at the public one only.
    """
    parts = parse(url, allow_private=allow_private)
    host = parts.hostname
    assert host is not None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        async with asyncio.timeout(_RESOLVE_TIMEOUT_S):
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
    except (OSError, TimeoutError) as exc:
        raise DisallowedUrl(f"the host {host} could not be resolved ({exc})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise DisallowedUrl(f"the host {host} has no address")
    if not allow_private:
        private = [address for address in addresses if not is_public(address)]
        if private:
            raise DisallowedUrl(
                f"the host {host} resolves to a private, loopback or link-local address"
                f" ({private[0]})"
            )
    return Target(url=parts, host=host, port=port, addresses=addresses)
