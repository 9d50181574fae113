"""Fixtures for the reliability suite: API keys of every scope, and a real uvicorn server process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from app.auth.service import SCOPES, create_key
from app.db import make_engine
from tests.server import ServerProcess


@pytest.fixture
def scoped_keys(database_url: str, pg: object) -> dict[str, str]:
    """One raw API key per scope (track, ingest, read, admin), stored hashed like `shopmind keys create`."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            return {scope: create_key(session, f"rel-{scope}", [scope])[0] for scope in SCOPES}
    finally:
        engine.dispose()


@pytest.fixture
def server(database_url: str, redis_url: str, redis_prefix: str, pg: object) -> Iterator[ServerProcess]:
    """`uvicorn app.asgi:app` in a subprocess on a free port, against the test database and prefix."""
    with ServerProcess(database_url, redis_url, redis_prefix) as proc:
        yield proc
