"""The dashboard end to end in a real headless Chromium, against a real uvicorn server process.

Needs Debian's chromium at /usr/bin/chromium (`.ci/run` installs it) and the `playwright` package; it
fails, never skips, when the browser is missing. Leaves a screenshot in tests/artifacts/dashboard.png.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import ADMIN_KEY, isolated_settings
from tests.server import ServerProcess
from tests.serving.conftest import load_shop

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "tests" / "artifacts" / "dashboard.png"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHARTS = ("chart-events", "chart-offline", "chart-earned", "chart-propensity")


def _attribute(client: TestClient, user_ids: list[str]) -> None:
    """Clicks, carts and purchases on recommended items, carrying their recommendation_id."""
    events: list[dict[str, Any]] = []
    for k, user_id in enumerate([*user_ids, "dashboard-newcomer"]):
        recs = client.get(f"/v1/users/{user_id}/recommendations", params={"n": 3}).json()
        for depth, item in enumerate(recs["items"]):
            kinds = ["click", "add_to_cart", "purchase"][: 3 - depth if k % 2 == 0 else 1 + depth % 2]
            events += [{"event_id": f"dash-{uuid.uuid4().hex}", "user_id": user_id, "item_id": item["item_id"],
                        "type": kind, "recommendation_id": recs["recommendation_id"],
                        **({"price": 10.0} if kind == "purchase" else {})} for kind in kinds]
    body = client.post("/v1/events", json={"events": events}).json()
    assert body["rejected"] == 0, body["errors"][:3]


def test_dashboard_renders_charts_and_try_it_in_chromium(database_url: str, redis_url: str) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install it with "
                    "`apt-get update && apt-get install -y chromium` (.ci/run does this when it is missing).")
    from playwright.sync_api import sync_playwright

    with isolated_settings(database_url, redis_url) as settings, ServerProcess(
        database_url, redis_url, settings.redis_prefix, access_log=True
    ) as server, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))

            page.goto(f"{server.base_url}/dashboard?key={ADMIN_KEY}")
            assert page.url == f"{server.base_url}/dashboard", "the key must be dropped from the URL"
            cookie = next(c for c in page.context.cookies() if c["name"] == "shopmind_dashboard")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            # a fresh install: no events, no model — the page still renders, without script errors
            assert page.locator(".badge.warn", has_text="no model yet").is_visible()
            assert not problems, problems

            with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
                loaded = load_shop(client, settings)
                users = sorted({str(e["user_id"]) for e in loaded.shop.events})
                _attribute(client, users[:12])
            user_id = users[0]
            page.reload()

            page.wait_for_function(
                "ids => ids.every(id => { const c = document.getElementById(id);"
                " return c && window.Chart && Chart.getChart(c); })", arg=list(CHARTS), timeout=15_000,
            )
            for chart_id in CHARTS:
                datasets = page.evaluate(
                    "id => Chart.getChart(document.getElementById(id)).data.datasets"
                    ".map(d => d.data.reduce((a, v) => a + (v || 0), 0))", chart_id,
                )
                assert datasets and sum(datasets) > 0, f"{chart_id} has no data: {datasets}"
            assert page.locator("table.runs tbody tr").count() >= 1
            assert page.locator("text=succeeded").first.is_visible()

            page.fill("#try-user", user_id)
            page.click("#try-form button[type=submit]")
            page.wait_for_selector(f"#try-result[data-loaded='{user_id}']", timeout=15_000)
            reasons = page.locator("#try-recs li .reason").all_inner_texts()
            assert reasons and all(r.strip() for r in reasons), reasons
            probability = page.locator("#try-propensity .big").inner_text()
            assert probability.endswith("%"), probability

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert not problems, problems  # no script errors, no CSP violations
        finally:
            browser.close()
        access_log = server.output()
        assert "/dashboard?key=[redacted]" in access_log, access_log[-2000:]
        assert ADMIN_KEY not in access_log, "the access log must not show the key"
