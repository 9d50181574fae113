"""A rebuild reads users, items and events as of one instant, whatever ingest commits meanwhile.

The snapshot's events carry dense user and item indices joined in Postgres against the same id
tables the snapshot reads first; a shopper or item created between those reads would shift every
index after it and hand events to the wrong shopper or item.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from app.worker.load import load_snapshot

T = 1_790_000_000


class _WriterAfterUsersRead:
    """The rebuild's connection, with another writer committing just after the users table was read
    (as ingest does on a live shop while a large snapshot is being read)."""

    def __init__(self, conn: psycopg.Connection[Any], write: Callable[[], None]) -> None:
        self._conn, self._write, self._written = conn, write, False

    def execute(self, *args: Any, **kwargs: Any) -> psycopg.Cursor[Any]:
        cursor = self._conn.execute(*args, **kwargs)
        if "FROM users" in str(args[0]) and not self._written:
            self._written = True
            self._write()
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_ids_and_events_are_read_at_one_instant(client: TestClient, pg: psycopg.Connection) -> None:
    posted = [{"user_id": "bea", "item_id": "x-lamp", "type": "view", "timestamp": T},
              {"user_id": "cal", "item_id": "y-desk", "type": "purchase", "timestamp": T + 1}]
    assert client.post("/v1/events", json={"events": posted}).json()["accepted"] == 2

    def ingest_meanwhile() -> None:  # a shopper and an item that sort before every other
        late = {"user_id": "aaron", "item_id": "a-chair", "type": "view", "timestamp": T + 2}
        assert client.post("/v1/events", json={"events": [late]}).json()["accepted"] == 1

    snapshot = load_snapshot(_WriterAfterUsersRead(pg, ingest_meanwhile), now=T + 10)  # type: ignore[arg-type]
    log = snapshot.log
    assert log.user_ids.tolist() == ["bea", "cal"] and log.item_ids.tolist() == ["x-lamp", "y-desk"]
    events = sorted(zip(log.user_ids[log.user].tolist(), log.item_ids[log.item].tolist(), strict=True))
    assert events == [("bea", "x-lamp"), ("cal", "y-desk")]
    assert len(snapshot.catalog.items) == 2
    # the next snapshot sees the late event, attributed to its own shopper and item
    again = load_snapshot(pg, now=T + 10).log
    assert ("aaron", "a-chair") in set(zip(again.user_ids[again.user].tolist(), again.item_ids[again.item].tolist(),
                                           strict=True))
