"""Removing shoppers from a model version: their per-user fields and their ids in its user id table.

The API erases one shopper from every version in Redis; a rebuild erases, from the version it is about
to publish, the shoppers erased since its snapshot (`app.worker.erasures`).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from app.store.codec import text
from app.store.keys import Keys

# KEYS[1]: a version's user id table (ids joined by "\n"; lookalike lists point at positions in it).
# ARGV: user ids; each one's entry becomes "" and every other id keeps its position. One script: two
# erasures at once used to GET the table and SET it back, and the later SET undid the other's blank.
BLANK_IDS = r"""
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local wrapped, blanked = '\n' .. current .. '\n', 0
for _, id in ipairs(ARGV) do
  local needle = '\n' .. id .. '\n'
  local at = string.find(wrapped, needle, 1, true)
  if at then
    wrapped = string.sub(wrapped, 1, at) .. string.sub(wrapped, at + #needle - 1)
    blanked = blanked + 1
  end
end
if blanked > 0 then redis.call('SET', KEYS[1], string.sub(wrapped, 2, -2), 'KEEPTTL') end
return blanked
"""

META_FIELDS = ["user_parts", "user_zsets"]
"""The fields of a version's meta hash naming its per-user hashes and sorted sets."""


def user_parts(meta: Sequence[bytes | str | None]) -> tuple[list[str], list[str]]:
    """(per-user hashes, per-user sorted sets) of a version, from its META_FIELDS values."""
    hashes, zsets = (text(value or b"") for value in meta)
    return [p for p in hashes.split(",") if p], [p for p in zsets.split(",") if p]


def erase_from_version(client: redis.Redis, keys: Keys, version: str, user_ids: Sequence[str]) -> None:
    """Remove the users' fields and members from every per-user part of `version`, and blank their ids."""
    if not user_ids:
        return
    hashes, zsets = user_parts(client.hmget(keys.model(version, "meta"), META_FIELDS))
    pipe = client.pipeline(transaction=False)
    for part in hashes:
        pipe.hdel(keys.model(version, part), *user_ids)
    for part in zsets:
        pipe.zrem(keys.model(version, part), *user_ids)
    pipe.eval(BLANK_IDS, 1, keys.model(version, "users"), *user_ids)
    pipe.execute()
