"""`shopmind import` and `shopmind export` against the test database and Redis."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import redis
from click.testing import CliRunner, Result

from app.cli import main
from app.settings import Settings, get_settings
from app.store.keys import Keys

NOW = int(time.time())
COLUMNS = ["event_id", "user_id", "item_id", "type", "value", "price", "timestamp", "session_id",
           "recommendation_id", "properties"]


Invoke = Callable[..., Result]


@pytest.fixture
def run(settings: Settings) -> Invoke:
    assert settings.database_url and settings.redis_url
    env = {"SHOPMIND_DATABASE_URL": settings.database_url, "SHOPMIND_REDIS_URL": settings.redis_url,
           "SHOPMIND_REDIS_PREFIX": settings.redis_prefix}

    def invoke(*args: str) -> Result:
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()

    return invoke


def _csv_rows() -> list[dict[str, str]]:
    rows = [
        {"event_id": f"c{k}", "user_id": f"u{k % 4}", "item_id": f"i{k % 6}",
         "type": ("view", "add_to_cart", "purchase")[k % 3], "value": "2" if k % 3 == 1 else "",
         "price": "19.5" if k % 3 else "", "timestamp": str(NOW - 1000 + k), "session_id": f"s{k % 2}",
         "recommendation_id": "", "properties": json.dumps({"k": k}) if k % 5 == 0 else ""}
        for k in range(20)
    ]
    rows.insert(5, {**rows[0], "event_id": "bad-type", "type": "teleport"})            # file line 7
    rows.insert(12, {**rows[0], "event_id": "future", "timestamp": str(NOW + 86400)})  # file line 14
    rows.insert(15, {**rows[0], "event_id": "bad-json", "properties": "{oops"})        # file line 17
    return rows


def _write_csv(path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(_csv_rows())


def test_import_csv_then_jsonl_then_export_round_trip(
    run: Invoke, tmp_path: Path, pg: psycopg.Connection[tuple[object, ...]], rds: redis.Redis,
    settings: Settings,
) -> None:
    invoke = run
    csv_path = tmp_path / "events.csv"
    _write_csv(csv_path)
    result = invoke("import", str(csv_path), "--batch-size", "7", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "events.csv: 20 accepted, 0 duplicates, 3 rejected" in result.output
    assert "line 7: type:" in result.output
    assert "line 14: timestamp: more than 300 s in the future" in result.output
    assert "line 17: properties: not valid JSON" in result.output
    assert pg.execute("SELECT count(*), count(DISTINCT user_id) FROM events").fetchone() == (20, 4)
    row = pg.execute("SELECT value, price, properties, session_id FROM events WHERE event_id = 'c10'")
    assert row.fetchone() == (2.0, 19.5, {"k": 10}, "s0")
    # the same code path as the API: real-time state is in Redis at once
    assert rds.llen(Keys.of(settings).history("u1")) == 5

    jsonl = tmp_path / "more.jsonl"
    lines = [json.dumps({"event_id": f"j{k}", "user_id": "u9", "item_id": "i1", "type": "click",
                         "timestamp": datetime.fromtimestamp(NOW - k, UTC).isoformat()}) for k in range(5)]
    lines += ["", "{not json", "[1, 2]", json.dumps({"event_id": "c0", "user_id": "u0", "item_id": "i0",
                                                     "type": "view", "timestamp": NOW - 1000})]
    jsonl.write_text("\n".join(lines) + "\n")
    result = invoke("import", str(jsonl), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "more.jsonl: 5 accepted, 1 duplicates, 2 rejected" in result.output
    assert "line 7: invalid JSON" in result.output and "line 8: not a JSON object" in result.output

    out = tmp_path / "export.jsonl"
    result = invoke("export", "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(exported) == 25
    by_id = {e["event_id"]: e for e in exported}
    assert [e["event_id"] for e in exported[:3]] == ["c0", "c1", "c2"]  # oldest (first stored) first
    assert by_id["c10"] == {
        "event_id": "c10", "user_id": "u2", "item_id": "i4", "type": "add_to_cart", "value": 2.0,
        "price": 19.5, "timestamp": datetime.fromtimestamp(NOW - 990, UTC).isoformat(), "session_id": "s0",
        "properties": {"k": 10},
    }
    assert by_id["j0"]["timestamp"] == datetime.fromtimestamp(NOW, UTC).isoformat()

    # the export imports back unchanged: nothing is new
    result = invoke("import", str(out), "--no-progress")
    assert "export.jsonl: 0 accepted, 25 duplicates, 0 rejected" in result.output

    # to standard output, for pipes
    result = invoke("export", "--no-progress")
    assert [json.loads(line) for line in result.stdout.splitlines()] == exported


def test_import_refuses_unknown_csv_columns(run: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("user_id,type,item,when\nu1,view,i1,0\n")
    result = run("import", str(path), "--no-progress")
    assert result.exit_code != 0
    assert "unknown columns ['item', 'when']" in result.output
