"""Dashboard sessions: an admin key is exchanged once for a random token kept in Redis.

The cookie carries only the token (HttpOnly, SameSite=Strict, path /dashboard, Secure over HTTPS);
Redis keeps its SHA-256 -> a reference to the key that opened it (`KeyVerifier.reference`) for 12 hours.
A session is revoked by deleting that Redis key (logout does), and no signing secret needs configuring.
Every request re-checks the key behind the session, so `shopmind keys revoke` or a new
SHOPMIND_ADMIN_KEY ends its sessions within SHOPMIND_KEY_CACHE_SECONDS instead of 12 hours later. Keys
themselves are never stored, logged or echoed.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from typing import Any

from fastapi import Request, Response

from app.auth.service import KeyVerifier
from app.errors import RateLimited
from app.ratelimit import AddressLimiter
from app.store.keys import Keys

COOKIE = "shopmind_dashboard"
COOKIE_PATH = "/dashboard"
SESSION_SECONDS = 12 * 3600
MAX_KEY_LENGTH = 512  # real keys are 46 characters; anything much longer is not worth hashing


class LoginRefused(Exception):
    """A key that does not open the dashboard; `status` is 401 (unknown), 403 (not admin) or 429 (too
    many attempts from this address, with `headers` carrying Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def login(request: Request, raw_key: str) -> str:
    """Verify an admin key and open a session; returns the new session token (for the cookie).

    Every attempt counts against the client address's login budget (SHOPMIND_LOGIN_ATTEMPTS_PER_MINUTE)
    before the key is looked at: SHOPMIND_ADMIN_KEY is chosen by people and may be guessable.
    """
    attempts: AddressLimiter = request.app.state.login_attempts
    try:
        await attempts.spend(request.client.host if request.client else None)
    except RateLimited as limited:
        raise LoginRefused(429, str(limited.detail), limited.headers) from None
    raw_key = raw_key.strip()
    if not raw_key or len(raw_key) > MAX_KEY_LENGTH:
        raise LoginRefused(401, "Enter an admin API key.")
    verifier: KeyVerifier = request.app.state.key_verifier
    principal = await verifier.verify(raw_key)
    if principal is None:
        raise LoginRefused(401, "Unknown or revoked key.")
    if "admin" not in principal.scopes:
        raise LoginRefused(403, "This key lacks the admin scope; the dashboard is for administrators.")
    token = secrets.token_urlsafe(32)
    keys: Keys = request.app.state.keys
    await request.app.state.redis.set(keys.dashboard_session(_digest(token)), verifier.reference(principal),
                                      ex=SESSION_SECONDS)
    logging.getLogger(__name__).info("dashboard.login", extra={"key_id": principal.key_id})
    return token


async def session_key_id(request: Request) -> str | None:
    """The key id behind the request's session cookie, or None when absent, unknown, expired, or when
    the key that opened it was revoked, rotated or lost the admin scope (the session is then deleted)."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 128:
        return None
    keys: Keys = request.app.state.keys
    session = keys.dashboard_session(_digest(token))
    raw = await request.app.state.redis.get(session)
    if raw is None:
        return None
    verifier: KeyVerifier = request.app.state.key_verifier
    principal = await verifier.recheck(raw.decode())
    if principal is None or "admin" not in principal.scopes:
        await request.app.state.redis.delete(session)
        logging.getLogger(__name__).info("dashboard.session_ended", extra={"reason": "key no longer valid"})
        return None
    return principal.key_id


async def logout(request: Request) -> None:
    token = request.cookies.get(COOKIE)
    if token and len(token) <= 128:
        keys: Keys = request.app.state.keys
        await request.app.state.redis.delete(keys.dashboard_session(_digest(token)))


def set_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE, token, max_age=SESSION_SECONDS, path=COOKIE_PATH, httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


_KEY_IN_QUERY = re.compile(r"([?&]key=)[^&\s\"]*")


class RedactKeyQuery(logging.Filter):
    """Blanks `key=...` in access-log lines (uvicorn logs the query string of `/dashboard?key=`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = _redact(record.msg)
        return True


def _redact(value: Any) -> Any:
    return _KEY_IN_QUERY.sub(r"\1[redacted]", value) if isinstance(value, str) else value


def install_log_redaction() -> None:
    """Add RedactKeyQuery to uvicorn's access logger once (idempotent across app instances)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactKeyQuery) for f in access.filters):
        access.addFilter(RedactKeyQuery())
