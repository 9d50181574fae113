"""Writing an outbox row the way a firing does (`app.webhooks.service.enqueue`, in a transaction)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from app.db import make_async_engine
from app.webhooks import service


def enqueue(database_url: str, event: str, user_id: str | None, payload: dict[str, Any]) -> int:
    async def run() -> int:
        engine = make_async_engine(database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                return await service.enqueue(conn, event, user_id, json.dumps(payload))
        finally:
            await engine.dispose()

    return asyncio.run(run())
