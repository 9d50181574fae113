"""The `Shopmind-Signature` header, Stripe's scheme: `t=<unix seconds>,v1=<hex HMAC-SHA256>` over
`"<t>.<body>"` with the endpoint's secret. Receivers recompute it and reject old timestamps (replays)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

HEADER = "Shopmind-Signature"


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance_seconds: float = 300) -> bool:
    """What a receiver does (tests and the API guide's example use it)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_seconds:
        return False
    expected = signature(secret, timestamp, body).split(",v1=")[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))
