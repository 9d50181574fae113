"""The URL check on its own: which addresses are refused, and where a delivery then connects."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from app.webhooks import urls


@pytest.mark.parametrize(("address", "refused"), [
    ("8.8.8.8", False), ("93.184.215.14", False), ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", False),
    ("10.0.0.1", True), ("172.31.255.255", True), ("192.168.1.1", True), ("127.0.0.1", True),
    ("169.254.169.254", True), ("100.64.0.1", True), ("0.0.0.0", True), ("224.0.0.1", True),
    ("255.255.255.255", True), ("::1", True), ("fe80::1", True), ("fc00::1", True), ("::", True),
    ("::ffff:127.0.0.1", True), ("::ffff:8.8.8.8", False), ("ff02::1", True), ("198.18.0.1", True),
])
def test_refused_addresses(address: str, refused: bool) -> None:
    assert urls.refused(ipaddress.ip_address(address)) is refused


def test_a_public_literal_is_kept_and_pinned() -> None:
    target = asyncio.run(urls.check("https://93.184.215.14:8443/hook?x=1", allow_private=False))
    assert target.url == "https://93.184.215.14:8443/hook?x=1"
    assert target.host_header == "93.184.215.14:8443" and target.sni_hostname == "93.184.215.14"
    v6 = asyncio.run(urls.check("http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/h", allow_private=False))
    assert v6.url == "http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/h" and v6.sni_hostname is None


def test_allowed_private_urls_pass_unchanged() -> None:
    target = asyncio.run(urls.check("http://localhost:8080/hook", allow_private=True))
    assert target == urls.Target("http://localhost:8080/hook", None, None)


def test_a_name_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(urls.UnsafeURL, match=r"127\.0\.0\.1"):
        asyncio.run(urls.check("http://localhost/hook", allow_private=False))
