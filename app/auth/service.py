"""API keys: creation, hashing and verification with a short in-process cache.

Keys are `sm_` + 43 url-safe characters (256 random bits). Only their SHA-256 is stored; a high-entropy
key needs no slow hash, and lookup by hash keeps verification O(1).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.auth.models import ApiKey

SCOPES: tuple[str, ...] = ("track", "ingest", "read", "admin")
"""`track` is the browser's scope: its key sits in every shop page, so anyone can copy it, and it may only
post browser-observable events (`POST /v1/events`, types in `app.events.schemas.BROWSER_EVENT_TYPES`).
`ingest` (the shop's backend: events of every type, catalog, users), `read` (serving), `admin`
(everything, erasure, rebuilds). No scope implies another but `admin`, which implies them all."""


@dataclass(frozen=True)
class Principal:
    key_id: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_raw_key() -> str:
    return "sm_" + secrets.token_urlsafe(32)


def validate_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {', '.join(SCOPES)}; got {scopes}")
    if "track" in scopes and set(scopes) != {"track"}:
        # a track key is published in pages; any other scope beside it would be published too
        raise ValueError("a `track` key is for browsers and takes no other scope; create a second key")
    return sorted(set(scopes))


def create_key(session: Session, name: str, scopes: list[str]) -> tuple[str, ApiKey]:
    """Store a new key (hashed) and return the raw key, which is shown exactly once."""
    raw = new_raw_key()
    row = ApiKey(name=name, key_hash=hash_key(raw), prefix=raw[:10], scopes=validate_scopes(scopes))
    session.add(row)
    session.flush()
    return raw, row


MAX_CACHED = 10_000
"""Entries per cache of KeyVerifier (valid keys, unknown keys, key ids); the oldest goes first."""


def _bounded_put(cache: dict[str, tuple[float, Principal | None]], key: str, value: tuple[float, Principal | None],
                 limit: int) -> None:
    if key not in cache and len(cache) >= limit:
        del cache[next(iter(cache))]  # dicts keep insertion order: the oldest entry
    cache[key] = value


class KeyVerifier:
    """Resolves a presented key to a Principal; caches hits and misses for `ttl` seconds.

    Valid keys and unknown ones are cached apart: anyone can send unknown keys by the thousand, and a
    full miss cache must push out old misses, never a valid key (whose eviction would put every request
    of that key back on Postgres).

    `reference(principal)` names the key behind a principal without the key itself (a stored key's id;
    for SHOPMIND_ADMIN_KEY, a fingerprint of its value), and `recheck(reference)` answers whether that
    key is still valid: long-lived credentials derived from a key (dashboard sessions) call it, so a
    revoked or rotated key stops them within `ttl`, as it stops the key itself.
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], admin_key: str | None, ttl: float,
                 max_cached: int = MAX_CACHED):
        self._sessionmaker = sessionmaker
        self._admin_hash = hash_key(admin_key) if admin_key else None
        self._admin = Principal(key_id="admin-env", scopes=frozenset({"admin"}))
        # Changes with the key's value, so a session opened with the previous SHOPMIND_ADMIN_KEY names a
        # key no replica accepts any more. Keyed by the key itself: what Redis holds is no plain hash
        # of the admin key to be tested against guesses offline.
        self._admin_reference = (
            "admin-env:" + hmac.new(admin_key.encode(), b"shopmind key reference", "sha256").hexdigest()[:32]
            if admin_key else None
        )
        self._ttl = ttl
        self._max = max_cached
        self._hits: dict[str, tuple[float, Principal | None]] = {}
        self._misses: dict[str, tuple[float, Principal | None]] = {}
        self._by_id: dict[str, tuple[float, Principal | None]] = {}

    async def verify(
        self, raw: str, before_lookup: Callable[[], Awaitable[None]] | None = None
    ) -> Principal | None:
        """The key's principal, or None for an unknown or revoked key.

        `before_lookup` is awaited before Postgres is asked (not for a cached answer): it may raise to
        refuse the lookup, as the per-address limit of failed authentications does.
        """
        digest = hash_key(raw)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return self._admin
        now = time.monotonic()
        cached = self._hits.get(digest) or self._misses.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        if before_lookup is not None:
            await before_lookup()
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(ApiKey.id, ApiKey.scopes).where(
                        ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)
                    )
                )
            ).first()
        principal = Principal(key_id=str(row.id), scopes=frozenset(row.scopes)) if row else None
        self._hits.pop(digest, None)  # a key revoked since: its stale hit must not outlive the miss
        self._misses.pop(digest, None)
        _bounded_put(self._hits if principal else self._misses, digest, (now + self._ttl, principal), self._max)
        return principal

    def reference(self, principal: Principal) -> str:
        """A name for `principal`'s key that `recheck` resolves while the key is valid (never the key)."""
        if principal is self._admin and self._admin_reference is not None:
            return self._admin_reference
        return principal.key_id

    async def recheck(self, reference: str) -> Principal | None:
        """The principal of the key `reference` names while it is valid (unrevoked, unrotated); None after.

        Stored keys are read by id, cached for `ttl` like verified keys, so revocation shows within it.
        """
        if reference.startswith("admin-env"):
            ok = self._admin_reference is not None and hmac.compare_digest(reference, self._admin_reference)
            return self._admin if ok else None
        if not (reference.isascii() and reference.isdigit()):
            return None
        now = time.monotonic()
        cached = self._by_id.get(reference)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(ApiKey.id, ApiKey.scopes).where(ApiKey.id == int(reference), ApiKey.revoked_at.is_(None))
                )
            ).first()
        principal = Principal(key_id=str(row.id), scopes=frozenset(row.scopes)) if row else None
        _bounded_put(self._by_id, reference, (now + self._ttl, principal), self._max)
        return principal
