"""POST /v1/campaigns/export and `shopmind campaign export --item` with an item's audience."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.campaigns import export
from app.settings import Settings
from tests.audience.conftest import BUYERS, FANS, TARGET


def _jsonl(client: TestClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    with client.stream("POST", "/v1/campaigns/export", json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("application/x-ndjson")
        assert f'filename="campaign-item-{TARGET}.jsonl"' in r.headers["content-disposition"]
        return [json.loads(line) for line in r.iter_lines() if line]


def _audience(client: TestClient, **params: Any) -> list[str]:
    body = client.get(f"/v1/items/{TARGET}/audience", params={"n": 1000, **params}).json()
    return [u["user_id"] for u in body["users"]]


def test_rows_stream_in_the_audiences_order_a_page_at_a_time(built: TestClient, monkeypatch: Any) -> None:
    monkeypatch.setattr(export, "PAGE", 3)  # several pages of the item audience's cursor, not one read
    rows = _jsonl(built, {"audience": {"item_id": TARGET}, "n_items": 2})
    assert [r["user_id"] for r in rows] == _audience(built)
    assert not {r["user_id"] for r in rows} & set(BUYERS)
    for row in rows[:3]:
        mine = built.get(f"/v1/users/{row['user_id']}/propensity").json()
        assert (row["probability"], row["tier"]) == (round(mine["probability"], 6), mine["tier"])
        assert row["recommendation_id"] and 1 <= len(row["items"]) <= 2 and row["items"][0]["title"]


def test_limit_min_score_and_buyers(built: TestClient) -> None:
    rows = _jsonl(built, {"audience": {"item_id": TARGET, "limit": 4}, "n_items": 1})
    assert [r["user_id"] for r in rows] == _audience(built)[:4]
    rows = _jsonl(built, {"audience": {"item_id": TARGET, "min_score": 0.5, "include_buyers": True}, "n_items": 1})
    assert [r["user_id"] for r in rows] == _audience(built, min_score=0.5, include_buyers="true")
    assert set(BUYERS) <= {r["user_id"] for r in rows}


def test_an_erased_shopper_is_not_exported(built: TestClient) -> None:
    assert built.delete(f"/v1/users/{FANS[1]}").status_code == 200
    rows = _jsonl(built, {"audience": {"item_id": TARGET}, "n_items": 1})
    assert rows and FANS[1] not in {r["user_id"] for r in rows}


def test_the_cli_exports_an_items_audience(built: TestClient, settings: Settings, tmp_path: Path) -> None:
    env = {**os.environ, "SHOPMIND_DATABASE_URL": settings.database_url or "",
           "SHOPMIND_REDIS_URL": settings.redis_url or "", "SHOPMIND_REDIS_PREFIX": settings.redis_prefix}
    out = tmp_path / "g0.csv"
    done = subprocess.run([sys.executable, "-m", "app.cli", "campaign", "export", "--item", TARGET, "--n-items", "2",
                           "--format", "csv", "--out", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table = list(csv.reader(io.StringIO(out.read_text())))
    expected = _audience(built)
    assert [row[0] for row in table[1:]] == expected and expected
    assert f"{len(expected)} shoppers exported" in done.stderr
    wrong = subprocess.run([sys.executable, "-m", "app.cli", "campaign", "export", "--item", TARGET, "--tier", "high"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and "--min-score" in wrong.stderr
