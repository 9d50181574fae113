"""Route dependencies: `Depends(require("read"))` authenticates the caller and checks the scope.

`require("ingest", "track")` accepts a key holding any of the scopes; the route then narrows what the
weaker one may do (`request.state.principal` or the dependency's value is the Principal).

Requests without a valid key are limited per client address (`app.state.auth_failures`, an
AddressLimiter): past the limit they answer 429 instead of 401, and keys not verified lately are not
looked up in Postgres for that address until it has attempts again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.auth.service import KeyVerifier, Principal
from app.errors import Forbidden, Unauthorized
from app.ratelimit import AddressLimiter

_bearer = HTTPBearer(auto_error=False, description="API key as `Authorization: Bearer <key>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key in `X-API-Key`")
# Declared so the OpenAPI page shows both ways to authenticate; the value is read in _presented_key.
_bearer_dep = Depends(_bearer)
_header_dep = Depends(_header)


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


def require(scope: str, *alternatives: str) -> Callable[..., Awaitable[Principal]]:
    accepted = (scope, *alternatives)

    async def dependency(
        request: Request,
        _b: HTTPAuthorizationCredentials | None = _bearer_dep,
        _h: str | None = _header_dep,
    ) -> Principal:
        raw = _presented_key(request)
        address = request.client.host if request.client else None
        failures: AddressLimiter | None = getattr(request.app.state, "auth_failures", None)
        if raw is None:
            if failures is not None:
                await failures.spend(address)
            raise Unauthorized("Missing API key: send `Authorization: Bearer <key>` or `X-API-Key`.")
        verifier: KeyVerifier = request.app.state.key_verifier
        principal = await verifier.verify(
            raw, before_lookup=(lambda: failures.check(address)) if failures is not None else None
        )
        if principal is None:
            if failures is not None:
                await failures.spend(address)
            raise Unauthorized("Unknown or revoked API key.")
        if not any(principal.allows(s) for s in accepted):
            raise Forbidden(f"This key lacks the `{'` or `'.join(accepted)}` scope.")
        request.state.principal = principal
        limiter = getattr(request.app.state, "rate_limiter", None)
        if limiter is not None:
            await limiter.check(principal, address=address)
        return principal

    return dependency

