"""The `track` key (the one in every shop page, readable by anyone): browser events in, nothing else.

Every route of the app is walked, not only /v1: a route added later is refused to a track key unless
it is listed below as public, so a new route cannot quietly open to the key the whole web can read.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from starlette.routing import Mount

from app.auth.service import create_key
from app.db import make_engine
from app.events.schemas import BROWSER_EVENT_TYPES
from app.main import create_app
from app.settings import Settings

INGEST = ("POST", "/v1/events")
PUBLIC = {
    ("GET", "/"): "redirects to the API docs",
    ("GET", "/healthz"): "liveness probe, no I/O",
    ("GET", "/readyz"): "readiness probe for load balancers",
    ("GET", "/openapi.json"): "the API description",
    ("GET", "/docs"): "the API description",
    ("GET", "/docs/oauth2-redirect"): "the API description",
    ("GET", "/redoc"): "the API description",
    ("MOUNT", "/static"): "shopmind.js, loaded by shop pages",
    ("MOUNT", "/dashboard/static"): "the dashboard's scripts and styles",
    ("GET", "/dashboard/login"): "the login form",
    ("POST", "/dashboard/logout"): "ends the caller's own session",
}
# The dashboard takes an API key only at login (which refuses a track key 403); its other routes want a
# session, and a track key in a header is none.
LOGIN = {("GET", "/dashboard"), ("POST", "/dashboard/login")}
SESSION_ONLY = {("GET", "/dashboard/api/try")}
# A download link the browser follows: without a session it sends the browser to the login form.
SESSION_REDIRECT = {("GET", "/dashboard/export")}


def all_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route, ("MOUNT", path) of every mount, through included routers."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before included routers were kept as a tree
        flat = [(r, getattr(r, "methods", None), r.path) for r in app.routes]
    else:
        flat = [(rc.original_route, rc.methods, rc.path) for rc in iter_route_contexts(app.router.routes)]
    found: list[tuple[str, str]] = []
    for route, methods, path in flat:
        if isinstance(route, Mount):
            found.append(("MOUNT", path))
        else:
            found.extend((method, path) for method in methods or () if method != "HEAD")
    return sorted(found)


def _url(path: str) -> str:
    return re.sub(r"\{([a-z_]+)\}", lambda m: f"trk-{m.group(1).replace('_id', '')}-1", path)


def _key(database_url: str, scopes: list[str]) -> str:
    engine = make_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            return create_key(session, "pages", scopes)[0]
    finally:
        engine.dispose()


@pytest.fixture
def track_key(database_url: str, pg: object) -> str:
    return _key(database_url, ["track"])


@pytest.fixture
def browser(settings: Settings) -> Iterator[TestClient]:
    """No key by default, redirects not followed, /metrics behind a key so it is walked too."""
    strict = settings.model_copy(update={"metrics_require_key": True})
    with TestClient(create_app(strict), follow_redirects=False) as c:
        yield c


def test_track_key_is_refused_everywhere_but_ingest(browser: TestClient, track_key: str) -> None:
    header = {"X-API-Key": track_key}
    routes = all_routes(browser.app)  # type: ignore[arg-type]
    assert INGEST in routes and ("GET", "/v1/users/{user_id}/recommendations") in routes
    failures: list[str] = []
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        if (method, path) == INGEST:
            body = {"events": [{"user_id": "trk-u", "item_id": "trk-i", "type": "view"}]}
            status = browser.post(path, json=body, headers=header).status_code
            expected = {200}
        elif (method, path) in LOGIN:
            if method == "GET":
                status = browser.get(path, params={"key": track_key}).status_code
            else:
                status = browser.post(path, data={"key": track_key}).status_code
            expected = {403}
        elif (method, path) in SESSION_REDIRECT:
            response = browser.request(method, _url(path), headers=header, follow_redirects=False)
            status = response.status_code
            expected = {303}
            if response.headers.get("location", "").split("?")[0] != "/dashboard/login":
                failures.append(f"{method} {path}: redirected to {response.headers.get('location')}, not the login")
        elif (method, path) in SESSION_ONLY:
            status = browser.request(method, _url(path), params={"user_id": "u"}, headers=header).status_code
            expected = {401}
        else:
            # no body: the scope check runs before the body is read, so 403 is the answer, not 422
            response = browser.request(method, _url(path), headers=header)
            status = response.status_code
            expected = {403}
            if status == 403 and response.json().get("error") != "Forbidden":
                failures.append(f"{method} {path}: 403 without the Forbidden envelope: {response.text}")
        if status not in expected:
            failures.append(f"{method} {path}: {status}, expected {sorted(expected)}")
    assert not failures, "a track key got past these (list a public route in PUBLIC):\n" + "\n".join(failures)


def test_track_key_posts_browser_event_types_only(
    browser: TestClient, track_key: str, database_url: str, pg: psycopg.Connection[tuple[object, ...]]
) -> None:
    header = {"X-API-Key": track_key}
    events = [{"user_id": "trk-u", "item_id": "trk-i", "type": t} for t in sorted(BROWSER_EVENT_TYPES)]
    accepted = browser.post("/v1/events", json={"events": events}, headers=header)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["accepted"] == len(BROWSER_EVENT_TYPES)

    for forged in ({"type": "purchase", "price": 1.0}, {"type": "rating", "value": 5}):
        batch = [{"user_id": "trk-v", "item_id": "trk-i", "type": "view"},
                 {"user_id": "trk-v", "item_id": "trk-i", **forged}]
        refused = browser.post("/v1/events", json={"events": batch}, headers=header)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "Forbidden"
        assert forged["type"] in refused.json()["detail"] and "ingest" in refused.json()["detail"]
    # nothing of a refused batch is stored, not even its allowed events
    assert pg.execute("SELECT count(*) FROM events WHERE user_id = 'trk-v'").fetchone() == (0,)

    # the shop's backend, with an ingest key, sends the same purchase
    backend = {"X-API-Key": _key(database_url, ["ingest"])}
    batch = [{"user_id": "trk-v", "item_id": "trk-i", "type": "purchase", "price": 1.0}]
    assert browser.post("/v1/events", json={"events": batch}, headers=backend).status_code == 200


def test_track_key_bucket_is_per_client_address(settings: Settings, track_key: str) -> None:
    """The key is public: one address spending its bucket leaves other shoppers' browsers unaffected."""
    tight = settings.model_copy(update={"rate_limit_per_second": {"track": 1.0, "ingest": 1000.0},
                                        "rate_limit_burst_seconds": 2.0})
    app = create_app(tight)
    body = {"events": [{"user_id": "trk-u", "item_id": "trk-i", "type": "view"}]}
    header = {"X-API-Key": track_key}
    with TestClient(app, client=("203.0.113.7", 40000)) as abuser:
        statuses = [abuser.post("/v1/events", json=body, headers=header).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
    with TestClient(app, client=("198.51.100.3", 40000)) as shopper:
        assert shopper.post("/v1/events", json=body, headers=header).status_code == 200


def _shopmind(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPMIND_")}
    assert settings.database_url and settings.redis_url
    env.update(SHOPMIND_DATABASE_URL=settings.database_url, SHOPMIND_REDIS_URL=settings.redis_url)
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_cli_creates_track_keys_alone(
    settings: Settings, browser: TestClient, pg: psycopg.Connection[tuple[object, ...]]
) -> None:
    made = _shopmind(settings, "keys", "create", "--scope", "track", "--name", "pages")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert pg.execute("SELECT scopes FROM api_keys WHERE name = 'pages'").fetchone() == (["track"],)
    header = {"X-API-Key": key}
    body = {"events": [{"user_id": "trk-u", "item_id": "trk-i", "type": "click"}]}
    assert browser.post("/v1/events", json=body, headers=header).status_code == 200
    assert browser.get("/v1/users/trk-u/recommendations", headers=header).status_code == 403
    # a track key is published in pages: no other scope may ride along with it
    mixed = _shopmind(settings, "keys", "create", "--scope", "track", "--scope", "read")
    assert mixed.returncode == 2 and "track" in mixed.stderr
    assert pg.execute("SELECT count(*) FROM api_keys").fetchone() == (1,)
