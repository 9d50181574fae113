"""The shortcuts of the ingest hot path give what the plain computations they replace would give."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import orjson
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from app.events import validate
from app.events.known import KnownIds
from app.events.realtime import POPULARITY_WEIGHTS
from app.settings import Settings
from app.store.codec import decode_history, encode_history
from app.store.keys import Keys
from tests import live_state

_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_TIMESTAMPS: list[object] = [
    1714557600, 1714557600.123456, 1714557600123,  # seconds, fractional, milliseconds
    "2024-05-01T10:00:00Z", "2024-05-01T10:00:00.654321+05:30", "2024-05-01T10:00:00-09:45",
    "2024-05-01T10:00:00.5", "2010-12-31T23:59:59.999999+14:00",
]


def test_epoch_and_stored_timestamp_match_the_parsed_datetime(settings: Settings) -> None:
    events = [{"event_id": f"t{k}", "user_id": "u", "item_id": "i", "type": "view", "timestamp": ts}
              for k, ts in enumerate(_TIMESTAMPS)]
    events.append({"event_id": "now", "user_id": "u", "item_id": "i", "type": "view"})
    now = datetime.now(UTC)
    parsed = validate.valid_body_events(orjson.dumps({"events": events}))
    assert parsed is not None
    rows = validate.check_batch(parsed, settings, now, validated=True).rows
    assert len(rows) == len(events)
    for event, row in zip(parsed, rows, strict=True):
        ts = event.get("timestamp") or now
        ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
        assert row.epoch == ts.timestamp()
        assert row.ts == (ts - _POSTGRES_EPOCH) // timedelta(microseconds=1)


def test_other_tzinfo_objects_are_asked_every_time(settings: Settings) -> None:
    """Python callers may pass datetimes of any tzinfo; only fixed offsets are remembered."""
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    stamps = [datetime(2024, 1, 15, 12, tzinfo=berlin), datetime(2024, 7, 15, 12, tzinfo=berlin),
              datetime(2024, 7, 15, 12, tzinfo=timezone(timedelta(hours=-3)))]
    raw = [{"event_id": f"z{k}", "user_id": "u", "item_id": "i", "type": "view", "timestamp": ts}
           for k, ts in enumerate(stamps)]
    rows = validate.check_batch(raw, settings, datetime.now(UTC)).rows
    assert [r.epoch for r in rows] == [ts.timestamp() for ts in stamps]


def test_timestamps_are_stored_to_the_microsecond(client: TestClient, pg: psycopg.Connection) -> None:
    events = [{"event_id": f"t{k}", "user_id": "u", "item_id": "i", "type": "view", "timestamp": ts}
              for k, ts in enumerate(_TIMESTAMPS)]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == len(events)
    parsed = validate.valid_body_events(orjson.dumps({"events": events}))
    assert parsed is not None
    expected = {e["event_id"]: (e["timestamp"] if e["timestamp"].tzinfo else e["timestamp"].replace(tzinfo=UTC))
                for e in parsed}
    stored = dict(pg.execute("SELECT event_id, ts FROM events").fetchall())
    assert stored == expected


def test_history_entries_are_encode_history(client: TestClient, rds: redis.Redis, settings: Settings) -> None:
    now = time.time()
    events = [
        {"user_id": "u1", "item_id": "i|1", "type": "view", "timestamp": now - 30},
        {"user_id": "u1", "item_id": "i2", "type": "rating", "value": 4.5, "timestamp": now - 20},
        {"user_id": "u1", "item_id": "i3", "type": "add_to_cart", "value": 2, "timestamp": now - 10.0005},
    ]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == 3
    history = rds.lrange(Keys.of(settings).history("u1"), 0, -1)
    expected = [encode_history(e["timestamp"], e["type"], e["item_id"], e.get("value"))  # type: ignore[arg-type]
                for e in reversed(events)]
    assert [h.decode() for h in history] == expected
    assert decode_history(history[-1])[3] == "i|1"


def test_popularity_summed_per_item_equals_one_increment_per_event(
    client: TestClient, rds: redis.Redis, settings: Settings
) -> None:
    """The batch's increments of an item are summed before Redis sees them; a category listed twice
    counts twice, as before."""
    keys = Keys.of(settings)
    client.post("/v1/items", json={"items": [
        {"item_id": "shoe", "categories": ["shoes", "sale", "sale"]},
        {"item_id": "sock", "categories": []},
    ]})
    now = float(int(time.time()))  # whole seconds: stored exactly
    events = [{"user_id": f"u{k % 7}", "item_id": ("shoe", "sock", "new")[k % 3],
               "type": ("view", "purchase", "add_to_cart", "dislike")[k % 4], "timestamp": now - 97 * k}
              for k in range(300)]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == 300

    per_second = 1.0 / (settings.popularity_half_life_days * 86400.0)
    (t0,) = live_state.epochs(rds, keys)  # every bucket touched took the same T0
    expected: dict[str, float] = {}
    for e in events:  # one increment per event, the way a ZINCRBY per event would add them
        weight = POPULARITY_WEIGHTS[str(e["type"])]
        if weight > 0:
            item = str(e["item_id"])
            expected[item] = expected.get(item, 0.0) + weight * 2.0 ** ((float(e["timestamp"]) - t0) * per_second)  # type: ignore[arg-type]
    overall = live_state.popularity(rds, keys)
    assert overall == {k: pytest.approx(v, rel=1e-12) for k, v in expected.items()}
    shoe = keys.bucket("shoe")
    assert rds.zscore(keys.popularity_category("shoes", shoe), "shoe") == pytest.approx(expected["shoe"], rel=1e-12)
    assert rds.zscore(keys.popularity_category("sale", shoe), "shoe") == pytest.approx(2 * expected["shoe"], rel=1e-12)
    assert live_state.categories(rds, keys) >= {b"shoes", b"sale"}


def test_long_histories_in_one_batch(client: TestClient, rds: redis.Redis, settings: Settings) -> None:
    """More entries for one user than one command takes (256): chunked, trimmed to the newest."""
    keys = Keys.of(settings)
    now = time.time()
    events = [{"user_id": "heavy", "item_id": f"i{k % 300}", "type": "view", "timestamp": now - k}
              for k in range(600)]
    events += [{"user_id": "light", "item_id": "i1", "type": "purchase", "timestamp": now},
               {"user_id": "light", "item_id": "i1", "type": "view", "timestamp": now - 1}]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == 602
    history = [decode_history(h) for h in rds.lrange(keys.history("heavy"), 0, -1)]
    assert len(history) == settings.history_length
    assert [h[3] for h in history] == [f"i{k % 300}" for k in range(settings.history_length)]
    assert rds.scard(keys.seen("heavy")) == 300
    assert [decode_history(h)[1] for h in rds.lrange(keys.history("light"), 0, -1)] == ["purchase", "view"]
    assert rds.smembers(keys.seen("light")) == {b"i1"} == rds.smembers(keys.purchased("light"))


def test_unknown_ids_come_back_sorted_and_only_the_unknown() -> None:
    known = KnownIds()
    assert known.unknown(0, {"b", "a"}, {"y", "x"}) == (["a", "b"], ["x", "y"])
    known.stored(0, ["a"], ["x"])
    assert known.unknown(0, {"c", "a", "b"}, {"x", "z"}) == (["b", "c"], ["z"])
    assert known.unknown(1, {"a"}, {"x"}) == (["a"], ["x"])  # something was deleted: trust nothing


def test_a_redis_without_the_script_gets_it_again(client: TestClient, rds: redis.Redis, settings: Settings) -> None:
    """The real-time script is called by its SHA; a restarted or flushed Redis no longer has it."""
    keys = Keys.of(settings)
    rds.script_flush()
    for k in range(2):  # the first call finds no script, the second finds it cached again
        body = client.post("/v1/events", json={"events": [{"user_id": "s", "item_id": f"i{k}", "type": "view"}]}).json()
        assert body["accepted"] == 1 and body["realtime_updated"] is True
    assert [decode_history(h)[3] for h in rds.lrange(keys.history("s"), 0, -1)] == ["i1", "i0"]
