"""A small generated shop, loaded through the API and rebuilt once, shared by the serving tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from app.demo.generator import Shop, generate_shop, iter_event_batches
from app.main import create_app
from app.settings import Settings
from app.worker.pipeline import RunResult, rebuild
from tests.conftest import ADMIN_KEY, isolated_settings


@dataclass
class LoadedShop:
    shop: Shop
    client: TestClient
    settings: Settings
    run: RunResult


def load_shop(client: TestClient, settings: Settings, n_users: int = 150, n_items: int = 60) -> LoadedShop:
    shop = generate_shop(n_users=n_users, n_items=n_items, days=120, seed=3, now=time.time())
    assert client.post("/v1/items", json={"items": shop.items}).status_code == 200
    for batch in iter_event_batches(shop, size=5000):
        events = [{k: v for k, v in e.items() if v is not None} for e in batch]
        body = client.post("/v1/events", json={"events": events}).json()
        assert body["rejected"] == 0, body["errors"][:3]
    return LoadedShop(shop, client, settings, rebuild(settings, trigger="test"))


@pytest.fixture(scope="module")
def loaded(database_url: str, redis_url: str) -> Iterator[LoadedShop]:
    """Loaded and rebuilt once per test module (a rebuild takes seconds); torn down after it.

    Tests that change state touch entities of their own, or only what no other test relies on.
    """
    with isolated_settings(database_url, redis_url) as settings, TestClient(
        create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    ) as client:
        yield load_shop(client, settings)
