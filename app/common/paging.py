"""Cursor paging over a model version's ranked sorted sets (audiences), shared by every audience target.

A cursor pins the model version and remembers the last member returned; the next page starts right
after that member's rank, so pages never overlap or skip even if a user is erased in between, and a
rebuild mid-way does not reshuffle a campaign's pages while the old version is kept.
"""

from __future__ import annotations

import base64
import json
from typing import cast

import redis.asyncio as aioredis

from app.errors import BadRequest
from app.store.codec import text
from app.store.keys import Keys


def encode_cursor(version: str, rank: int, member: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([version, rank, member]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, int, str]:
    try:
        version, rank, member = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(version), int(rank), str(member)
    except (ValueError, TypeError) as exc:
        raise BadRequest("Invalid cursor: pass back the `next_cursor` of the previous page.") from exc


async def ranked_page(
    redis: aioredis.Redis, keys: Keys, version: str, part: str, limit: int, cursor: str | None, min_score: float
) -> tuple[str, list[tuple[str, float]], str | None]:
    """(version read, [(member, score)] with score >= min_score, next cursor or None) of one page."""
    key = keys.model(version, part)
    start = 0
    if cursor:
        cursor_version, rank, member = decode_cursor(cursor)
        if cursor_version != version:
            # a rebuild published a new ranking; continue the old one while it is kept
            version = cursor_version
            key = keys.model(version, part)
            if not await redis.exists(key):
                raise BadRequest("This cursor's model version has expired; start again without a cursor.")
        current = cast(int | None, await redis.zrevrank(key, member))
        start = current + 1 if current is not None else rank
    rows = cast(list[tuple[bytes, float]], await redis.zrevrange(key, start, start + limit - 1, withscores=True))
    members = [(text(m), float(s)) for m, s in rows if s >= min_score]
    more = len(members) == limit and len(rows) == limit
    next_cursor = encode_cursor(version, start + limit - 1, members[-1][0]) if more and members else None
    return version, members, next_cursor
