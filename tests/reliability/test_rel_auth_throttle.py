"""Traffic without a valid key is limited per client address, and cannot push valid keys out of the cache.

Unknown keys cost Postgres a lookup each (a random key is never in the cache), so an address that keeps
failing answers 429 and, while it does, its unknown keys are not looked up at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.auth.service import KeyVerifier, create_key
from app.db import make_async_engine, make_engine
from app.main import create_app
from app.settings import Settings
from tests.conftest import ADMIN_KEY

ATTACKER = ("203.0.113.9", 40000)
NEIGHBOUR = ("198.51.100.4", 40000)
CAP = 300


class KeyLookups:
    """Counts the statements an engine sends to `api_keys` (an observer on the real engine)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.count += "api_keys" in statement


def _stored_key(settings: Settings, scopes: list[str]) -> str:
    assert settings.database_url
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session, session.begin():
            return create_key(session, "throttle", scopes)[0]
    finally:
        engine.dispose()


@pytest.fixture
def tight(settings: Settings) -> Settings:
    return settings.model_copy(update={"auth_failures_per_minute": 3.0, "login_attempts_per_minute": 2.0})


@pytest.fixture
def attacker(tight: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(tight), client=ATTACKER, follow_redirects=False) as c:
        yield c


def test_failed_authentications_are_limited_per_address(attacker: TestClient, tight: Settings) -> None:
    read_key = _stored_key(tight, ["read"])
    assert attacker.get("/v1/items/none", headers={"X-API-Key": read_key}).status_code == 404  # cached now
    lookups = KeyLookups(attacker.app.state.engine)  # type: ignore[attr-defined]

    assert attacker.get("/v1/items/none").status_code == 401  # no key at all counts too
    for guess in ("sm_guess_1", "sm_guess_2"):
        assert attacker.get("/v1/items/none", headers={"X-API-Key": guess}).status_code == 401
    assert lookups.count == 2

    limited = attacker.get("/v1/items/none", headers={"X-API-Key": "sm_guess_3"})
    assert limited.status_code == 429, limited.text
    assert limited.json()["error"] == "RateLimited" and "address" in limited.json()["detail"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 20  # one attempt back every 20 s at 3 per minute
    assert attacker.get("/v1/items/none").status_code == 429
    assert lookups.count == 2, "a limited address's unknown keys must not reach Postgres"

    # keys that need no lookup still work from there: the configured admin key, a key verified lately
    assert attacker.get("/v1/items/none", headers={"X-API-Key": ADMIN_KEY}).status_code == 404
    assert attacker.get("/v1/items/none", headers={"X-API-Key": read_key}).status_code == 404

    # another address has its own budget
    with TestClient(attacker.app, client=NEIGHBOUR) as neighbour:
        assert neighbour.get("/v1/items/none", headers={"X-API-Key": "sm_typo"}).status_code == 401


def test_dashboard_logins_are_limited_per_address(attacker: TestClient) -> None:
    for guess in ("sm_admin", "sm_password"):
        assert attacker.post("/dashboard/login", data={"key": guess}).status_code == 401
    limited = attacker.post("/dashboard/login", data={"key": ADMIN_KEY})  # even the right key, now
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert "Too many login attempts" in limited.text and "set-cookie" not in limited.headers
    assert attacker.get("/dashboard", params={"key": ADMIN_KEY}).status_code == 429  # the ?key= door too

    with TestClient(attacker.app, client=NEIGHBOUR, follow_redirects=False) as neighbour:
        assert neighbour.post("/dashboard/login", data={"key": ADMIN_KEY}).status_code == 303


def test_a_flood_of_unknown_keys_keeps_valid_keys_cached(settings: Settings) -> None:
    """A cache of CAP entries (MAX_CACHED, 10,000, in service; smaller here to spare 10,000 lookups)
    overflowed by unknown keys: the valid key verified before is still answered from the cache."""
    valid = _stored_key(settings, ["read"])

    async def run() -> tuple[int, int]:
        assert settings.database_url
        engine = make_async_engine(settings.database_url)
        try:
            verifier = KeyVerifier(async_sessionmaker(engine, class_=AsyncSession), None, ttl=600, max_cached=CAP)
            assert await verifier.verify(valid) is not None
            lookups = KeyLookups(engine)
            unknown = [f"sm_flood_{k}" for k in range(2 * CAP + 1)]
            for start in range(0, len(unknown), 100):
                chunk = unknown[start:start + 100]
                assert not any(await asyncio.gather(*(verifier.verify(k) for k in chunk)))
            flood = lookups.count
            assert (await verifier.verify(valid)) is not None
            return flood, lookups.count - flood
        finally:
            await engine.dispose()

    flood, after = asyncio.run(run())
    assert flood == 2 * CAP + 1
    assert after == 0, "the valid key was evicted by unknown ones and had to be looked up again"
