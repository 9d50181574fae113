"""Where a webhook may point: http(s) only, and by default no private, loopback or link-local address.

The check runs when an endpoint is registered and again before every delivery, on the addresses the
name resolves to at that moment; the delivery then connects to the address it checked (`Target`), so
a name re-pointed at an internal address between the check and the connect (DNS rebinding) is refused.
Nothing here connects anywhere: refusing an address never touches it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_SECONDS = 5.0
"""A resolver that does not answer costs a registration (or a delivery attempt) at most this long."""


class UnsafeURL(ValueError):
    """The URL is malformed, not http(s), unresolvable, or resolves to an address we refuse."""


@dataclass(frozen=True)
class Target:
    """What to connect to: `url` with its host replaced by the checked address (or unchanged when
    private addresses are allowed), the `host` header to send and the TLS server name."""

    url: str
    host_header: str | None
    sni_hostname: str | None


def parse(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise UnsafeURL(f"Not a valid URL: {exc}.") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("Only http:// and https:// URLs are accepted.")
    if not parts.hostname:
        raise UnsafeURL("The URL has no host.")
    if parts.username or parts.password:
        raise UnsafeURL("Credentials in the URL are not accepted; authenticate by the signature instead.")
    return parts


def refused(address: Address) -> bool:
    """Not a public unicast address: private, loopback, link-local, reserved, multicast, unspecified."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


async def _resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_SECONDS
        )
    except TimeoutError:
        raise UnsafeURL(f"The host `{host}` did not resolve within {RESOLVE_SECONDS:g} s.") from None
    except OSError as exc:
        raise UnsafeURL(f"The host `{host}` does not resolve ({exc.strerror or exc}).") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


async def check(url: str, allow_private: bool) -> Target:
    """The connection target for `url`, or UnsafeURL saying why it is refused."""
    parts = parse(url)
    if allow_private:
        return Target(url, None, None)
    host = parts.hostname
    assert host is not None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await _resolve(host, port)
    bad = sorted({str(a) for a in addresses if refused(a)})
    if bad or not addresses:
        raise UnsafeURL(
            f"`{host}` resolves to a private, loopback or link-local address ({', '.join(bad)}); "
            "set SHOPMIND_WEBHOOK_ALLOW_PRIVATE=true to allow those."
        )
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    return Target(
        parts._replace(netloc=netloc).geturl(),
        host_header=parts.netloc,
        sni_hostname=host if parts.scheme == "https" else None,
    )
