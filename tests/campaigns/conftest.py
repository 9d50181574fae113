from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.settings import Settings
from tests.triggers.test_propensity_rebuild import shop


@pytest.fixture
def built(client: TestClient, settings: Settings) -> Iterator[TestClient]:
    """A small live shop (60 shoppers over the last 62 days) and a model built from it."""
    from app.worker.pipeline import rebuild

    shop(client)
    rebuild(settings, trigger="test")
    yield client
