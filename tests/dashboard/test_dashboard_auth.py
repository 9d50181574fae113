"""Dashboard access: admin keys only, exchanged once for an HttpOnly session cookie kept in Redis."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.auth.service import create_key
from app.dashboard.auth import COOKIE, SESSION_SECONDS, RedactKeyQuery
from app.db import make_engine
from app.main import create_app
from app.settings import Settings
from tests.conftest import ADMIN_KEY


@pytest.fixture
def web(settings: Settings) -> Iterator[TestClient]:
    """A browser-like client: no API key header, redirects not followed."""
    with TestClient(create_app(settings), follow_redirects=False) as c:
        yield c


@pytest.fixture
def read_key(database_url: str, pg: object) -> str:
    engine = make_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            return create_key(session, "dash-read", ["read"])[0]
    finally:
        engine.dispose()


def _login(web: TestClient) -> None:
    response = web.get("/dashboard", params={"key": ADMIN_KEY})
    assert response.status_code == 303, response.text


def test_without_a_session_the_page_redirects_to_login(web: TestClient) -> None:
    response = web.get("/dashboard")
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login"
    # an API key header is not a dashboard session
    response = web.get("/dashboard", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code == 303
    login = web.get("/dashboard/login")
    assert login.status_code == 200
    assert 'name="key"' in login.text and "text/html" in login.headers["content-type"]


def test_wrong_key_shows_the_login_page_again_with_401(web: TestClient) -> None:
    response = web.get("/dashboard", params={"key": "sm_not_a_real_key"})
    assert response.status_code == 401
    assert "Unknown or revoked key" in response.text and 'name="key"' in response.text
    assert "sm_not_a_real_key" not in response.text
    assert COOKIE not in response.cookies
    posted = web.post("/dashboard/login", data={"key": "sm_not_a_real_key"})
    assert posted.status_code == 401
    assert web.post("/dashboard/login", data={}).status_code == 401


def test_key_in_query_sets_an_httponly_cookie_and_drops_the_key(
    web: TestClient, settings: Settings, rds: redis.Redis
) -> None:
    response = web.get("/dashboard", params={"key": ADMIN_KEY})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    assert ADMIN_KEY not in cookie
    assert response.headers["referrer-policy"] == "no-referrer"
    # the session lives in Redis under the token's hash, for 12 hours
    token = response.cookies[COOKIE]
    sessions = list(rds.scan_iter(match=f"{settings.redis_prefix}dash:session:*"))
    assert len(sessions) == 1 and token not in sessions[0].decode()
    assert 0 < rds.ttl(sessions[0]) <= SESSION_SECONDS

    page = web.get("/dashboard")
    assert page.status_code == 200
    assert 'id="chart-events"' in page.text and 'id="dashboard-data"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert web.get("/dashboard/login").status_code == 303  # already logged in


def test_login_form_post_sets_the_cookie(web: TestClient) -> None:
    response = web.post("/dashboard/login", data={"key": ADMIN_KEY})
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    assert "HttpOnly" in response.headers["set-cookie"]
    assert web.get("/dashboard").status_code == 200


def test_a_read_only_key_is_refused(web: TestClient, read_key: str) -> None:
    for response in (web.get("/dashboard", params={"key": read_key}),
                     web.post("/dashboard/login", data={"key": read_key})):
        assert response.status_code == 403
        assert "admin scope" in response.text
        assert "set-cookie" not in response.headers
    assert web.get("/dashboard").status_code == 303


def test_try_endpoint_requires_the_cookie(web: TestClient) -> None:
    anonymous = web.get("/dashboard/api/try", params={"user_id": "u1"},
                        headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "Unauthorized"
    web.cookies.set(COOKIE, "forged-token", path="/dashboard")
    assert web.get("/dashboard/api/try", params={"user_id": "u1"}).status_code == 401
    web.cookies.clear()
    _login(web)
    response = web.get("/dashboard/api/try", params={"user_id": "u1"})
    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == "u1"
    assert body["recommendations"]["strategy"].startswith("popularity")  # no model yet
    assert body["propensity"] is None and "No model yet" in body["propensity_note"]
    assert web.get("/dashboard/api/try", params={"user_id": ""}).status_code == 422


def test_logout_revokes_the_session(web: TestClient, settings: Settings, rds: redis.Redis) -> None:
    _login(web)
    token = web.cookies[COOKIE]
    response = web.post("/dashboard/logout")
    assert response.status_code == 303 and response.headers["location"] == "/dashboard/login"
    assert not list(rds.scan_iter(match=f"{settings.redis_prefix}dash:session:*"))
    web.cookies.set(COOKIE, token, path="/dashboard")  # replaying the old cookie does not help
    assert web.get("/dashboard").status_code == 303


def test_static_assets_are_served_and_the_page_is_not_in_the_schema(web: TestClient) -> None:
    chart = web.get("/dashboard/static/chart.umd.min.js")
    assert chart.status_code == 200 and "javascript" in chart.headers["content-type"]
    assert chart.text.startswith("/*!\n * Chart.js v4") and "MIT License" in chart.text[:300]
    assert web.get("/dashboard/static/dashboard.js").status_code == 200
    assert web.get("/dashboard/static/dashboard.css").status_code == 200
    paths = web.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/dashboard")]


def test_keys_never_reach_the_logs(web: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        _login(web)
        web.get("/dashboard", params={"key": "sm_wrong_key_in_a_url"})
    server_side = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records
                            if not r.name.startswith("httpx"))  # httpx is the test's own client
    assert "dashboard.login" in server_side
    assert ADMIN_KEY not in server_side and "sm_wrong_key_in_a_url" not in server_side
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:1", "GET", f"/dashboard?key={ADMIN_KEY}&x=1", "1.1", 303), None)
    RedactKeyQuery().filter(record)
    assert ADMIN_KEY not in record.getMessage() and "key=[redacted]&x=1" in record.getMessage()
