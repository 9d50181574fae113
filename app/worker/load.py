"""Read the source of truth (Postgres) into dense numpy arrays for a rebuild.

Events stream through a server-side cursor in large batches; string ids become dense indices with one
dict lookup each. Users and items come from their tables, so shoppers and products without events
still get an index (propensity scores every user; content covers every item).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray

from app.eventlog import TYPE_CODE, EventLog

_BATCH = 200_000


@dataclass(frozen=True)
class Catalog:
    """Item rows aligned with EventLog.item_ids (index k describes item k)."""

    items: list[dict[str, Any]]
    eligible: NDArray[np.bool_]  # not deleted and available
    deleted: NDArray[np.bool_]


@dataclass(frozen=True)
class Snapshot:
    log: EventLog
    catalog: Catalog
    user_attributes: list[dict[str, Any]]
    now: float


def load_snapshot(conn: psycopg.Connection[Any], now: float | None = None) -> Snapshot:
    now = time.time() if now is None else now
    user_rows = conn.execute("SELECT user_id, attributes FROM users ORDER BY user_id").fetchall()
    user_ids = np.array([r[0] for r in user_rows], dtype=object)
    user_pos = {u: k for k, u in enumerate(user_ids)}

    item_rows = conn.execute(
        "SELECT item_id, title, description, categories, tags, brand, price, available, attributes,"
        " deleted_at IS NOT NULL FROM items ORDER BY item_id"
    ).fetchall()
    items = [
        {"item_id": r[0], "title": r[1], "description": r[2], "categories": list(r[3] or []),
         "tags": list(r[4] or []), "brand": r[5], "price": r[6], "available": r[7], "attributes": r[8] or {}}
        for r in item_rows
    ]
    item_ids = np.array([r[0] for r in item_rows], dtype=object)
    item_pos = {i: k for k, i in enumerate(item_ids)}
    deleted = np.array([bool(r[9]) for r in item_rows], dtype=bool)
    available = np.array([bool(r[7]) for r in item_rows], dtype=bool)

    users: list[NDArray[np.int32]] = []
    items_idx: list[NDArray[np.int32]] = []
    types: list[NDArray[np.int8]] = []
    values: list[NDArray[np.float32]] = []
    prices: list[NDArray[np.float32]] = []
    stamps: list[NDArray[np.float64]] = []
    sessions: list[NDArray[np.int32]] = []
    session_pos: dict[str, int] = {}
    with conn.transaction(), conn.cursor(name="shopmind_rebuild_events") as cur:
        cur.itersize = _BATCH
        cur.execute(
            "SELECT user_id, item_id, type, value, price, extract(epoch FROM ts)::float8, session_id"
            " FROM events WHERE ts <= to_timestamp(%s) ORDER BY ts",
            (now,),
        )
        while rows := cur.fetchmany(_BATCH):
            u, i, t, v, p, ts, s = zip(*rows, strict=True)
            users.append(np.fromiter((user_pos[x] for x in u), dtype=np.int32, count=len(rows)))
            items_idx.append(
                np.fromiter((item_pos[x] if x is not None else -1 for x in i), dtype=np.int32, count=len(rows))
            )
            types.append(np.fromiter((TYPE_CODE[x] for x in t), dtype=np.int8, count=len(rows)))
            values.append(np.array(v, dtype=np.float64).astype(np.float32))
            prices.append(np.array(p, dtype=np.float64).astype(np.float32))
            stamps.append(np.array(ts, dtype=np.float64))
            sessions.append(
                np.fromiter(
                    (session_pos.setdefault(x, len(session_pos)) if x is not None else -1 for x in s),
                    dtype=np.int32, count=len(rows),
                )
            )

    def cat(parts: list[NDArray[Any]], dtype: type) -> NDArray[Any]:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    log = EventLog(
        user=cat(users, np.int32), item=cat(items_idx, np.int32), type=cat(types, np.int8),
        value=cat(values, np.float32), price=cat(prices, np.float32), ts=cat(stamps, np.float64),
        session=cat(sessions, np.int32), user_ids=user_ids, item_ids=item_ids,
    )
    catalog = Catalog(items=items, eligible=available & ~deleted, deleted=deleted)
    return Snapshot(log=log, catalog=catalog, user_attributes=[r[1] or {} for r in user_rows], now=now)
