from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis
import redis.asyncio as aioredis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.db import make_async_engine
from app.events import service
from app.main import create_app
from app.observability import metrics
from app.observability.multiprocess import MULTIPROCESS_ENV, prometheus_multiprocess
from app.settings import Settings
from app.store.keys import Keys

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return _parse(response.text)


def _value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


def _events(n: int, prefix: str) -> list[dict[str, object]]:
    now = time.time()
    types = ("view", "view", "add_to_cart", "purchase")
    return [
        {"event_id": f"{prefix}{k}", "user_id": f"u{k % 7}", "item_id": f"i{k % 11}",
         "type": types[k % 4], "timestamp": now - k}
        for k in range(n)
    ]


def test_ingest_counters_move_by_exact_amounts(client: TestClient) -> None:
    before = _scrape(client)
    events = _events(40, "m")  # 20 view, 10 add_to_cart, 10 purchase
    bad = [{"user_id": "u1", "type": "teleport", "item_id": "i1"}, {"user_id": "u1", "type": "view"}]
    first = client.post("/v1/events", json={"events": [*events, *bad]})
    assert first.json()["accepted"] == 40
    # 5 repeats of stored events plus one in-batch repeat of a new id
    again = [*events[:5], {**events[0], "event_id": "new1"}, {**events[1], "event_id": "new1"}]
    second = client.post("/v1/events", json={"events": again})
    assert (second.json()["accepted"], second.json()["duplicates"]) == (1, 6)
    after = _scrape(client)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("shopmind_events_ingested_total", type="view") == 21  # events[0] is a view
    assert delta("shopmind_events_ingested_total", type="add_to_cart") == 10
    assert delta("shopmind_events_ingested_total", type="purchase") == 10
    assert delta("shopmind_events_ingested_total", type="click") == 0
    assert ("shopmind_events_ingested_total", frozenset({("type", "click")})) in after  # pre-created
    assert delta("shopmind_events_duplicate_total") == 6
    assert delta("shopmind_events_rejected_total") == 2
    assert delta("shopmind_http_requests_total", method="POST", route="/v1/events", status="200") == 2
    assert delta("shopmind_http_request_duration_seconds_count", method="POST", route="/v1/events") == 2


def test_labels_are_route_templates_never_ids(client: TestClient) -> None:
    client.put("/v1/items/secret-item-77", json={"title": "x"})
    client.get("/v1/items/secret-item-77")
    client.get("/nothing/here/secret-path-99")
    client.get("/v1/items/secret-item-77", headers={"Authorization": "Bearer sm_wrong_key_secret"})
    text = client.get("/metrics").text
    for secret in ("secret-item-77", "secret-path-99", "sm_wrong_key_secret", "sm_test_admin_key"):
        assert secret not in text
    samples = _parse(text)
    assert _value(samples, "shopmind_http_requests_total",
                  method="GET", route="/v1/items/{item_id}", status="200") >= 1
    assert _value(samples, "shopmind_http_requests_total",
                  method="GET", route="/v1/items/{item_id}", status="401") >= 1
    assert _value(samples, "shopmind_http_requests_total",
                  method="GET", route=metrics.UNMATCHED_ROUTE, status="404") >= 1


def test_model_and_table_gauges_are_read_at_scrape_time(
    client: TestClient, pg: psycopg.Connection[tuple[object, ...]], rds: redis.Redis, settings: Settings
) -> None:
    client.post("/v1/events", json={"events": _events(12, "g")})
    pg.execute(
        "INSERT INTO model_runs (status, version, finished_at, duration_seconds, stages, metrics) VALUES "
        "('succeeded', 'v7', now() - interval '1 hour', 12.5, %s, %s),"
        " ('failed', NULL, now(), 1.0, '{}', '{}')",
        (json.dumps({"load": 1.5, "recommend": 8.0, "peak_rss_mb": 100.0}),
         json.dumps({"recommend": {"hybrid.ndcg@10": 0.31, "note": "text"}, "propensity": {"auc": 0.82}})),
    )
    rds.set(Keys.of(settings).model_pointer(), "v7")
    samples = _scrape(client)
    assert _value(samples, "shopmind_dependency_up", dependency="postgres") == 1
    assert _value(samples, "shopmind_dependency_up", dependency="redis") == 1
    assert _value(samples, "shopmind_model_info", version="v7") == 1
    assert _value(samples, "shopmind_model_metric", name="recommend.hybrid.ndcg@10") == 0.31
    assert _value(samples, "shopmind_model_metric", name="propensity.auc") == 0.82
    assert not any(n == "shopmind_model_metric" and ("name", "recommend.note") in lbl for n, lbl in samples)
    assert _value(samples, "shopmind_rebuild_stage_seconds", stage="recommend") == 8.0
    assert _value(samples, "shopmind_rebuild_memory_bytes", measure="peak_rss") == 100.0 * 1024 * 1024
    assert _value(samples, "shopmind_rebuild_duration_seconds") == 12.5
    assert _value(samples, "shopmind_rebuild_last_failed") == 1
    assert _value(samples, "shopmind_rebuild_runs", status="failed") == 1
    assert abs(_value(samples, "shopmind_rebuild_last_success_timestamp_seconds") - (time.time() - 3600)) < 60
    assert _value(samples, "shopmind_table_rows", table="events") == 12
    assert _value(samples, "shopmind_table_rows", table="users") == 7
    assert _value(samples, "shopmind_table_rows", table="items") == 11


def test_metrics_can_require_an_admin_key(settings: Settings) -> None:
    locked = settings.model_copy(update={"metrics_require_key": True})
    with TestClient(create_app(locked)) as anonymous:
        assert anonymous.get("/metrics").status_code == 401
        admin = settings.admin_key.get_secret_value() if settings.admin_key else ""
        assert anonymous.get("/metrics", headers={"X-API-Key": admin}).status_code == 200


def test_open_metrics_need_no_key(settings: Settings) -> None:
    with TestClient(create_app(settings)) as anonymous:
        assert anonymous.get("/metrics").status_code == 200


def test_realtime_skip_is_counted_when_redis_is_down(settings: Settings) -> None:
    before = _parse(metrics.render().decode())

    async def run() -> int:
        assert settings.database_url
        engine = make_async_engine(settings.database_url, pool_size=1)
        dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
        try:
            keys = Keys.of(settings)
            result = await service.ingest(engine, dead, keys, settings, _events(3, "r"))
        finally:
            await dead.aclose()
            await engine.dispose()
        assert result.realtime_updated is False
        return result.accepted

    accepted = asyncio.run(run())
    after = _parse(metrics.render().decode())
    assert accepted == 3
    assert (_value(after, "shopmind_realtime_skipped_events_total")
            - _value(before, "shopmind_realtime_skipped_events_total")) == 3


def test_redis_fallback_counter_by_path() -> None:
    before = _parse(metrics.render().decode())
    metrics.redis_fallback("/v1/users/{user_id}/recommendations")
    after = _parse(metrics.render().decode())
    name, path = "shopmind_redis_fallbacks_total", "/v1/users/{user_id}/recommendations"
    assert _value(after, name, path=path) - _value(before, name, path=path) == 1


_CHILD = """
import sys
from app.observability import metrics
metrics.observe_ingest({"view": int(sys.argv[1])}, 0, 0)
if len(sys.argv) > 2:
    sys.stdout.write(metrics.render().decode())
"""


def test_multiprocess_mode_sums_every_worker(tmp_path: Path) -> None:
    """Two processes count into PROMETHEUS_MULTIPROC_DIR; a third one's render() reports the sum."""
    env = {**os.environ, MULTIPROCESS_ENV: str(tmp_path)}
    for n in ("3", "4"):
        subprocess.run([sys.executable, "-c", _CHILD, n], env=env, check=True, timeout=60)
    out = subprocess.run([sys.executable, "-c", _CHILD, "5", "render"], env=env, check=True, timeout=60,
                         capture_output=True, text=True).stdout
    assert _value(_parse(out), "shopmind_events_ingested_total", type="view") == 12


def test_serve_sets_a_fresh_multiprocess_dir_for_several_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    with prometheus_multiprocess(1) as single:
        assert single is None and MULTIPROCESS_ENV not in os.environ
    with prometheus_multiprocess(2) as shared:
        assert shared is not None and shared.is_dir() and os.environ[MULTIPROCESS_ENV] == str(shared)
    assert not shared.exists() and MULTIPROCESS_ENV not in os.environ
