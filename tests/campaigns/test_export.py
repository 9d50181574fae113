"""POST /v1/campaigns/export after a real rebuild: one row per shopper with their own items, streamed."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.settings import Settings


def _jsonl(client: TestClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    with client.stream("POST", "/v1/campaigns/export", json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in r.iter_lines() if line]


def test_a_target_audience_in_ranking_order_with_each_shoppers_items(built: TestClient) -> None:
    everyone = built.get("/v1/audiences", params={"target": "purchase", "limit": 1000}).json()["users"]
    probabilities = [u["probability"] for u in everyone]
    cut = next(k for k in range(len(everyone) // 2, len(everyone) - 1) if probabilities[k] > probabilities[k + 1])
    floor = (probabilities[cut] + probabilities[cut + 1]) / 2  # between two shoppers: rounding cannot matter
    expected = [(u["user_id"], u["probability"]) for u in everyone[:cut + 1]]
    rows = _jsonl(built, {"audience": {"target": "purchase", "min_probability": floor}, "n_items": 3})
    assert [(r["user_id"], r["probability"]) for r in rows] == expected
    for row in rows[:5]:
        assert row["recommendation_id"] and 1 <= len(row["items"]) <= 3
        item = row["items"][0]
        assert item["title"].startswith("thing ") and item["price"] >= 10.0
        mine = built.get(f"/v1/users/{row['user_id']}/recommendations", params={"n": 3}).json()
        assert [i["item_id"] for i in row["items"]] == [i["item_id"] for i in mine["items"]]
        tier = built.get(f"/v1/users/{row['user_id']}/propensity").json()["tier"]
        assert row["tier"] == tier


def test_tier_and_limit_filter(built: TestClient) -> None:
    rows = _jsonl(built, {"audience": {"target": "purchase", "tier": "high", "limit": 3}, "n_items": 1})
    assert len(rows) == 3 and {r["tier"] for r in rows} == {"high"}


def test_listed_shoppers_as_csv(built: TestClient) -> None:
    body = {"audience": {"user_ids": ["shopper-1", "shopper-2", "nobody"]}, "n_items": 2, "format": "csv"}
    r = built.post("/v1/campaigns/export", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="campaign-purchase.csv"' in r.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(r.text)))
    assert table[0] == ["user_id", "probability", "tier", "recommendation_id", "item_1_id", "item_1_title",
                        "item_1_price", "item_2_id", "item_2_title", "item_2_price"]
    assert [row[0] for row in table[1:]] == ["shopper-1", "shopper-2", "nobody"]
    assert all(len(row) == 10 and row[3] and row[4] for row in table[1:])  # cold shoppers get popular items


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"audience": {"item_id": "nope"}, "n_items": 2}, 404, "nope"),
    ({"audience": {"item_id": "sku-1", "tier": "high"}}, 422, "tier"),
    ({"audience": {"target": "refund"}}, 400, "target"),
    ({"audience": {"target": "purchase"}, "n_items": 0}, 422, "n_items"),
    ({"audience": {"target": "purchase"}, "format": "xml"}, 422, "format"),
    ({"audience": {"target": "purchase"}, "placement": "nope"}, 404, "nope"),
])
def test_bad_requests_fail_before_streaming(built: TestClient, body: dict[str, Any], status: int, needle: str) -> None:
    r = built.post("/v1/campaigns/export", json=body)
    assert r.status_code == status, r.text
    assert needle in r.text


def test_no_model_is_503(client: TestClient) -> None:
    r = client.post("/v1/campaigns/export", json={"audience": {"target": "purchase"}})
    assert r.status_code == 503 and r.json()["error"] == "ModelNotReady"


def test_the_cli_writes_the_same_rows_to_a_file(built: TestClient, settings: Settings, tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SHOPMIND_DATABASE_URL": settings.database_url or "",
           "SHOPMIND_REDIS_URL": settings.redis_url or "", "SHOPMIND_REDIS_PREFIX": settings.redis_prefix}
    out = tmp_path / "high.csv"
    done = subprocess.run([sys.executable, "-m", "app.cli", "campaign", "export", "--tier", "high", "--n-items", "2",
                           "--format", "csv", "--out", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table = list(csv.reader(io.StringIO(out.read_text())))
    api = _jsonl(built, {"audience": {"target": "purchase", "tier": "high"}, "n_items": 2})
    assert [row[0] for row in table[1:]] == [r["user_id"] for r in api] and api
    assert f"{len(api)} shoppers exported" in done.stderr


def test_the_dashboard_button_downloads_the_same_rows(built: TestClient) -> None:
    from tests.conftest import ADMIN_KEY

    anonymous = built.get("/dashboard/export", params={"target": "purchase"}, follow_redirects=False,
                          headers={"Authorization": ""})
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/dashboard/login"
    page = built.get("/dashboard", params={"key": ADMIN_KEY})
    assert 'action="/dashboard/export"' in page.text and '<option value="purchase">' in page.text
    r = built.get("/dashboard/export", params={"target": "purchase", "tier": "high", "n_items": 2, "format": "csv"})
    assert r.status_code == 200 and 'filename="audience-purchase.csv"' in r.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(r.text)))
    api = _jsonl(built, {"audience": {"target": "purchase", "tier": "high"}, "n_items": 2})
    assert [row[0] for row in table[1:]] == [a["user_id"] for a in api] and api
