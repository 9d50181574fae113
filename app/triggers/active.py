"""Which trigger kinds exist, as ingest sees them: a per-process cache re-read at most every second.

Ingest asks before every batch; with no trigger defined (the usual shop) it runs no trigger statement
at all. A trigger written through this process shows at once; one written through another API process
within REFRESH_SECONDS. Arming statements join the triggers table themselves, so a stale cache can
only cost a statement that matches nothing, or arm a trigger a second late.
"""

from __future__ import annotations

import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

REFRESH_SECONDS = 1.0

_cache: dict[object, tuple[float, frozenset[str]]] = {}


async def kinds(engine: AsyncEngine) -> frozenset[str]:
    url = engine.url  # hashable, and cheaper than rendering it on every batch
    cached = _cache.get(url)
    now = time.monotonic()
    if cached is not None and now - cached[0] < REFRESH_SECONDS:
        return cached[1]
    async with engine.connect() as conn:
        found = frozenset((await conn.execute(text("SELECT DISTINCT kind FROM triggers"))).scalars())
    _cache[url] = (now, found)
    return found


def forget() -> None:
    """After a trigger write in this process: the next batch reads the table again."""
    _cache.clear()
