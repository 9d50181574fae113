"""A dashboard session ends with the key that opened it: revoked, or SHOPMIND_ADMIN_KEY changed.

The session cookie is worth 12 hours; without a re-check, a revoked admin key kept its dashboard that
long. Here the key cache time is one second, and each session must be refused once it has passed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
import redis
from click.testing import CliRunner
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.orm import Session

from app.auth.service import create_key
from app.cli import main
from app.dashboard.auth import COOKIE
from app.db import make_engine
from app.main import create_app
from app.settings import Settings, get_settings
from tests.conftest import ADMIN_KEY

CACHE_SECONDS = 1.0


@pytest.fixture
def quick(settings: Settings) -> Settings:
    return settings.model_copy(update={"key_cache_seconds": CACHE_SECONDS})


def _browser(settings: Settings) -> TestClient:
    return TestClient(create_app(settings), follow_redirects=False)


def _logged_in(web: TestClient) -> bool:
    """The login form redirects a valid session to the page; without one it shows the form."""
    status = web.get("/dashboard/login").status_code
    assert status in (200, 303), status
    return status == 303


def _sessions(rds: redis.Redis, settings: Settings) -> list[bytes]:
    return list(rds.scan_iter(match=f"{settings.redis_prefix}dash:session:*"))


@pytest.fixture
def stored_admin(quick: Settings, pg: psycopg.Connection[tuple[object, ...]]) -> Iterator[tuple[str, int]]:
    assert quick.database_url
    engine = make_engine(quick.database_url)
    with Session(engine) as session, session.begin():
        raw, row = create_key(session, "ops-admin", ["admin"])
        key_id = row.id
    engine.dispose()
    yield raw, key_id


def test_revoked_key_ends_its_session(
    quick: Settings, stored_admin: tuple[str, int], rds: redis.Redis
) -> None:
    raw, key_id = stored_admin
    with _browser(quick) as web:
        assert web.post("/dashboard/login", data={"key": raw}).status_code == 303
        assert _logged_in(web)
        assert web.get("/dashboard/api/try", params={"user_id": "u1"}).status_code == 200

        assert quick.database_url
        env = {"SHOPMIND_DATABASE_URL": quick.database_url, "SHOPMIND_REDIS_URL": quick.redis_url or ""}
        get_settings.cache_clear()
        try:
            revoked = CliRunner().invoke(main, ["keys", "revoke", str(key_id)], env=env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()
        assert revoked.exit_code == 0, revoked.output

        time.sleep(CACHE_SECONDS + 0.1)
        assert web.get("/dashboard").status_code == 303  # back to the login page
        assert web.get("/dashboard/api/try", params={"user_id": "u1"}).status_code == 401
        assert not _logged_in(web)
        assert not _sessions(rds, quick)  # the session itself is deleted, not only refused


def test_changed_admin_key_ends_sessions_of_the_old_one(quick: Settings, rds: redis.Redis) -> None:
    with _browser(quick) as web:
        assert web.get("/dashboard", params={"key": ADMIN_KEY}).status_code == 303
        assert _logged_in(web)
        cookie = web.cookies[COOKIE]

    # the same key after a restart: the session carries on
    with _browser(quick) as restarted:
        restarted.cookies.set(COOKIE, cookie, path="/dashboard")
        assert _logged_in(restarted)

    # SHOPMIND_ADMIN_KEY rotated and the service restarted: the old key's session is over
    rotated = quick.model_copy(update={"admin_key": SecretStr("sm_rotated_admin_key_9876543210")})
    with _browser(rotated) as after:
        after.cookies.set(COOKIE, cookie, path="/dashboard")
        assert not _logged_in(after)
        assert after.get("/dashboard/api/try", params={"user_id": "u1"}).status_code == 401
        assert not _sessions(rds, quick)
        # the new key opens a session as usual
        assert after.post("/dashboard/login", data={"key": "sm_rotated_admin_key_9876543210"}).status_code == 303
        assert _logged_in(after)


def test_session_value_names_the_key_without_holding_it(
    quick: Settings, stored_admin: tuple[str, int], rds: redis.Redis
) -> None:
    raw, key_id = stored_admin
    with _browser(quick) as web:
        web.post("/dashboard/login", data={"key": raw})
        web.get("/dashboard", params={"key": ADMIN_KEY})
    values = {rds.get(k) for k in _sessions(rds, quick)}
    assert str(key_id).encode() in values
    env_refs = [v for v in values if v and v.startswith(b"admin-env:")]
    assert len(env_refs) == 1
    assert ADMIN_KEY.encode() not in env_refs[0] and raw.encode() not in b"".join(v or b"" for v in values)
