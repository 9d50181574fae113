from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.main import create_app
from app.settings import Settings
from app.webhooks.dispatcher import BackgroundDispatcher
from tests.conftest import ADMIN_KEY
from tests.webhooks.receiver import Receiver, receiver

FAST = {
    "webhook_allow_private": True, "webhook_backoff_seconds": 0.2, "webhook_timeout_seconds": 2.0,
    "dispatcher_poll_seconds": 0.1,
}


def fast_settings(database_url: str, redis_url: str, redis_prefix: str, **overrides: object) -> Settings:
    return Settings(
        database_url=database_url, redis_url=redis_url, redis_prefix=redis_prefix,
        admin_key=SecretStr(ADMIN_KEY), _env_file=None, **{**FAST, **overrides},  # type: ignore[call-arg]
    )


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, pg: object) -> Settings:
    """Private addresses allowed (the receiver is on 127.0.0.1), short backoff, fast polling."""
    return fast_settings(database_url, redis_url, redis_prefix)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        yield c


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


@pytest.fixture
def dispatcher(settings: Settings) -> Iterator[BackgroundDispatcher]:
    running = BackgroundDispatcher(settings).start()
    yield running
    running.stop()
