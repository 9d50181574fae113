"""The browser snippet: served by the app, CORS for configured shop origins, and its behaviour in Node."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.auth.service import create_key
from app.db import make_engine
from app.main import create_app
from app.settings import Settings

SNIPPET = Path(__file__).resolve().parents[2] / "app" / "static" / "shopmind.js"
SHOP = "https://shop.example"


def test_snippet_is_served_as_javascript(client: TestClient) -> None:
    response = client.get("/static/shopmind.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert "Shopmind" in response.text and "X-API-Key" in response.text


@pytest.fixture
def cors_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"cors_origins": [SHOP]}))) as c:
        yield c


def _preflight(client: TestClient, origin: str) -> Any:
    return client.options("/v1/events", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key",
    })


def test_cors_allows_the_configured_origin_only(cors_client: TestClient) -> None:
    ok = _preflight(cors_client, SHOP)
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == SHOP
    assert "x-api-key" in ok.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in ok.headers
    other = _preflight(cors_client, "https://evil.example")
    assert "access-control-allow-origin" not in other.headers
    # error answers carry the header too, so the page can read why (CORS is the outermost layer)
    denied = cors_client.post("/v1/events", json={"events": []}, headers={"Origin": SHOP})
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == SHOP


def test_no_cors_by_default(client: TestClient) -> None:
    response = _preflight(client, SHOP)
    assert "access-control-allow-origin" not in response.headers


_HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const statuses = JSON.parse(process.argv[3]);
const calls = [], listeners = {};
function storage() {
  const m = new Map();
  return {getItem: k => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v))};
}
const win = {
  localStorage: storage(), sessionStorage: storage(), crypto: require("crypto").webcrypto,
  setTimeout, clearTimeout, JSON, Math, Promise, Error, String,
  fetch(url, init) {
    calls.push({url, init: {...init, body: JSON.parse(init.body)}});
    const status = statuses.length ? statuses.shift() : 200;
    return status === 0 ? Promise.reject(new TypeError("network down")) : Promise.resolve({status});
  },
  document: {visibilityState: "visible", addEventListener(t, f) { listeners[t] = f; }},
  addEventListener(t, f) { listeners["window:" + t] = f; },
};
win.window = win;
vm.createContext(win);
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), win);
const S = win.Shopmind;
(async () => {
  S.init({endpoint: "https://sm.example/", key: "KEY", flushMs: 60000, maxBatch: 3});
  S.track("view", "sku-1");
  S.track("add_to_cart", "sku-1", {value: 2, price: 9.5});
  S.track("click", "sku-1", {recommendationId: "popularity.abc"});  // 3rd: batch full
  await S.flush();
  S.track("view", "sku-2");          // the server answers 503: kept and sent again
  await S.flush();
  await S.flush();
  S.identify("customer-9");
  S.track("like", "sku-3");
  win.document.visibilityState = "hidden";
  listeners["visibilitychange"]();   // leaving the page sends what is queued
  await S.flush();
  let unknown = null, backend = null;
  try { S.track("teleport", "x"); } catch (e) { unknown = e.message; }
  try { S.track("purchase", "sku-1", {price: 9.5}); } catch (e) { backend = e.message; }
  await S.flush();
  process.stdout.write(JSON.stringify({calls, anon: S.anonymousId(), session: S.sessionId(), unknown, backend}));
})();
"""


def test_snippet_batches_retries_and_its_batches_are_accepted(
    client: TestClient, settings: Settings, pg: psycopg.Connection[tuple[object, ...]], tmp_path: Path
) -> None:
    node = shutil.which("node")
    assert node, "Node.js runs the snippet's harness: install it (the machine image ships it)"
    harness = tmp_path / "harness.js"
    harness.write_text(_HARNESS)
    run = subprocess.run([node, str(harness), str(SNIPPET), json.dumps([200, 503, 200, 200])],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    calls = out["calls"]
    assert [len(c["init"]["body"]["events"]) for c in calls] == [3, 1, 1, 1]
    first = calls[0]
    assert first["url"] == "https://sm.example/v1/events"
    assert first["init"]["keepalive"] is True and first["init"]["credentials"] == "omit"
    assert first["init"]["headers"]["X-API-Key"] == "KEY"
    events = first["init"]["body"]["events"]
    assert [e["type"] for e in events] == ["view", "add_to_cart", "click"]
    assert {e["user_id"] for e in events} == {out["anon"]}
    assert {e["session_id"] for e in events} == {out["session"]}
    assert events[1]["value"] == 2 and events[2]["recommendation_id"] == "popularity.abc"
    assert "timestamp" not in events[0]  # the server's clock decides
    assert calls[1]["init"]["body"] == calls[2]["init"]["body"]  # retried after the 503, same event_id
    assert calls[3]["init"]["body"]["events"][0]["user_id"] == "customer-9"
    assert "unknown" in out["unknown"]
    # purchases belong to the shop's backend: refused at once, nothing queued that would cost a batch a 403
    assert "backend" in out["backend"] and len(calls) == 4

    # What the snippet sends is what the API takes, with a track key (the one made for pages).
    assert settings.database_url
    engine = make_engine(settings.database_url)
    with Session(engine) as session, session.begin():
        track_key, _ = create_key(session, "browser", ["track"])
    engine.dispose()
    sent = [e for c in (calls[0], calls[1], calls[3]) for e in c["init"]["body"]["events"]]
    browser = {"Authorization": "", "X-API-Key": track_key}
    response = client.post("/v1/events", json={"events": sent}, headers=browser)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 5
    row = pg.execute("SELECT count(DISTINCT session_id) FROM events").fetchone()
    assert row == (1,)
