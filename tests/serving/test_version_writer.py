"""A version's hashes and sorted sets on real Redis (one server and a cluster): parts of many chunks
and several round trips arrive whole, values and scores exactly as given, and a discarded version
leaves nothing behind."""

from __future__ import annotations

import redis

from app.store import versions
from app.store.keys import Keys
from app.store.versions import VersionWriter

#: More fields than one round trip carries (chunks x chunks per round trip), and not a multiple of it.
MANY = versions._CHUNK * versions._CHUNKS_PER_ROUND_TRIP + versions._CHUNK // 2 + 7


def test_a_part_of_many_chunks_arrives_whole(rds: redis.Redis, redis_prefix: str) -> None:
    keys = Keys(redis_prefix)
    writer = VersionWriter(rds, keys, "v-many")
    fields = [(f"user-{k}", f'{{"p":{k / 7!r}}}' if k % 2 else bytes([k % 256, 0, 255])) for k in range(MANY)]
    members = [(f"user-{k}", k / 7 - 3.0) for k in range(MANY)]
    members.append(("user-5", 1e-300))  # a member given twice keeps its last score, as ZADD does
    writer.hash("prop:purchase", iter(fields))  # a generator, as the stages hand them
    writer.zset("aud:purchase", iter(members))

    stored = rds.hgetall(keys.model("v-many", "prop:purchase"))
    assert stored == {f.encode(): v.encode() if isinstance(v, str) else v for f, v in fields}
    ranked = rds.zrange(keys.model("v-many", "aud:purchase"), 0, -1, withscores=True)
    assert dict(ranked) == {m.encode(): s for m, s in members}  # floats exact: every score round-trips
    assert dict(ranked)[b"user-5"] == 1e-300 and len(ranked) == MANY

    writer.discard()
    assert not rds.exists(keys.model("v-many", "prop:purchase"), keys.model("v-many", "aud:purchase"))


def test_an_empty_part_writes_no_key(rds: redis.Redis, redis_prefix: str) -> None:
    keys = Keys(redis_prefix)
    writer = VersionWriter(rds, keys, "v-empty")
    writer.hash("cf", iter(()))
    writer.zset("aud:churn", [])
    assert not rds.exists(keys.model("v-empty", "cf"), keys.model("v-empty", "aud:churn"))
    assert writer.written == [keys.model("v-empty", "cf"), keys.model("v-empty", "aud:churn")]
