"""Per-API-key rate limiting: a token bucket kept in Redis, checked atomically in one round trip.

Each key id has a bucket holding at most `burst = rate × settings.rate_limit_burst_seconds` tokens,
refilled continuously at `rate` tokens per second, where `rate` comes from
`settings.rate_limit_per_second` for the key's broadest scope (admin > ingest > read > track). A `track`
key is public (it sits in every shop page), so its bucket is per key *and client address*: a visitor
who copies it and hammers the API cannot empty the bucket every shopper's browser shares. A request costs
one token; an empty bucket answers 429 with `Retry-After` (whole seconds, rounded up) until a token
is back. The bucket lives in Redis, so every API replica shares it, and the clock is Redis' own
(`TIME`), so replicas with skewed clocks still agree.

To spare a Redis round trip per request, a process takes tokens in small leases (5 % of a second's
rate, at most 100 and at least the request's cost, so a slow key still asks Redis every time) and
spends them locally. The bucket is charged when a lease is taken, so a key never gets more than its
rate across replicas; a lease unspent after a second is dropped, so tokens cannot pile up, and a key
may meet a 429 at most one lease per process early.

Redis is a cache here, not a gate: when it cannot be reached the limiter fails open (logs, lets the
request through) and stops asking for a few seconds so a dead Redis adds no latency per request.
"""

from __future__ import annotations

import logging
import math
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.auth.service import Principal
from app.errors import RateLimited
from app.settings import Settings
from app.store.keys import Keys

log = logging.getLogger(__name__)

SCOPE_BREADTH: tuple[str, ...] = ("admin", "ingest", "read", "track")
"""Broadest first: a key's rate is the rate of the first of these scopes it holds."""

FAIL_OPEN_SECONDS = 5.0
"""After a Redis error, requests pass unchecked for this long before Redis is tried again."""

LEASE_SHARE = 0.05
MAX_LEASE = 100.0
LEASE_SECONDS = 1.0

# KEYS[1] bucket hash; ARGV rate (tokens/s), burst (tokens), cost (tokens), lease (tokens wanted, >= cost).
# Returns {tokens granted (the lease, or 0 when not even `cost` is there), seconds until `cost` tokens
# are available} (strings: Lua numbers would be truncated to integers on the way out).
_TOKEN_BUCKET = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local granted = 0
local wait = 0
if tokens >= cost then
  granted = math.max(cost, math.min(lease, math.floor(tokens)))
  tokens = tokens - granted
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {string.format('%.6f', granted), string.format('%.6f', wait)}
"""


def rate_for(principal: Principal, settings: Settings) -> float:
    """Tokens per second for this key: the configured rate of its broadest scope."""
    for scope in SCOPE_BREADTH:
        if scope in principal.scopes and scope in settings.rate_limit_per_second:
            return settings.rate_limit_per_second[scope]
    return min(settings.rate_limit_per_second.values(), default=1.0)


TRACK_ONLY = frozenset({"track"})


def bucket_of(principal: Principal, address: str | None) -> str:
    """The bucket a request spends from: the key's, or for a track-only key the key's at this address."""
    if address and principal.scopes == TRACK_ONLY:
        return f"{principal.key_id}@{address}"
    return principal.key_id


class RateLimiter:
    """`await limiter.check(principal)` raises RateLimited (429) when the key's bucket is empty."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, settings: Settings) -> None:
        self._keys = keys
        self._settings = settings
        self._script = redis.register_script(_TOKEN_BUCKET)
        self._skip_until = 0.0
        self._leases: dict[str, tuple[float, float]] = {}  # key id -> (tokens left, monotonic expiry)

    async def check(self, principal: Principal, cost: float = 1.0, address: str | None = None) -> None:
        """`address`: the client's, which splits a track key's bucket (see `bucket_of`)."""
        now = time.monotonic()
        if now < self._skip_until:
            return
        bucket = bucket_of(principal, address)
        left, expires = self._leases.get(bucket, (0.0, 0.0))
        if left >= cost and now < expires:
            self._leases[bucket] = (left - cost, expires)
            return
        rate = rate_for(principal, self._settings)
        if rate <= 0:
            raise RateLimited("This key may not make requests (rate 0).", headers={"Retry-After": "3600"})
        burst = max(cost, rate * self._settings.rate_limit_burst_seconds)
        lease = min(burst, max(cost, min(MAX_LEASE, rate * LEASE_SHARE)))
        try:
            granted, wait = await self._script(
                keys=[self._keys.rate_limit(bucket)], args=[rate, burst, cost, lease]
            )
        except (RedisError, OSError) as exc:
            self._skip_until = time.monotonic() + FAIL_OPEN_SECONDS
            log.warning("ratelimit.fail_open", extra={"error": type(exc).__name__})
            return
        if float(granted) >= cost:
            if len(self._leases) > 10_000:
                self._leases.clear()
            # a concurrent request may have leased meanwhile: keep its unexpired tokens too
            left, expires = self._leases.get(bucket, (0.0, 0.0))
            left = left if expires > now else 0.0
            self._leases[bucket] = (left + float(granted) - cost, now + LEASE_SECONDS)
            return
        retry_after = max(1, math.ceil(float(wait)))
        raise RateLimited(
            f"Rate limit of {rate:g} requests/s (burst {burst:g}) exceeded for this key"
            f"{'' if bucket == principal.key_id else ' from this address'}; "
            f"retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


# KEYS[1] bucket hash; ARGV rate (tokens/s), burst (tokens), spend (0: only look, 1: spend a token).
# Returns the seconds until a token is there, as a string: "0" when one was (and, with spend, was taken).
_ATTEMPTS = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
if tokens < 1 then
  return string.format('%.6f', (1 - tokens) / rate)
end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens - 1), 'ts', string.format('%.6f', now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
end
return '0'
"""


class AddressLimiter:
    """Attempts per client address that hold no valid key: failed authentications and dashboard logins.

    A key verified lately is answered from the verifier's cache at no cost; everything else costs the
    database a lookup, so an address that keeps failing is stopped twice: its failures answer 429 once
    its bucket (`per_minute` tokens, refilled over a minute) is empty, and while it is empty the address's
    next unknown key is refused before any lookup (`check`). The client address is what uvicorn reports
    (behind a proxy: the forwarded one, when FORWARDED_ALLOW_IPS trusts that proxy). Fails open like
    RateLimiter: Redis is a cache here, not a gate.
    """

    def __init__(self, redis: aioredis.Redis, keys: Keys, kind: str, per_minute: float) -> None:
        self._keys = keys
        self._kind = kind
        self._rate = per_minute / 60.0
        self._burst = max(1.0, per_minute)
        self._script = redis.register_script(_ATTEMPTS)
        self._skip_until = 0.0
        self._what = "failed authentications" if kind == "auth" else "login attempts"

    async def check(self, address: str | None) -> None:
        """Raise RateLimited while `address` has no attempt left; spend nothing."""
        await self._run(address, spend=False)

    async def spend(self, address: str | None) -> None:
        """Count one attempt of `address`; raise RateLimited when it had none left."""
        await self._run(address, spend=True)

    async def _run(self, address: str | None, *, spend: bool) -> None:
        if time.monotonic() < self._skip_until:
            return
        key = self._keys.address_attempts(self._kind, address or "unknown")
        try:
            wait = float(await self._script(keys=[key], args=[self._rate, self._burst, "1" if spend else "0"]))
        except (RedisError, OSError) as exc:
            self._skip_until = time.monotonic() + FAIL_OPEN_SECONDS
            log.warning("ratelimit.fail_open", extra={"error": type(exc).__name__, "limit": self._kind})
            return
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise RateLimited(
                f"Too many {self._what} from this address ({self._burst:g} per minute); retry in {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )
