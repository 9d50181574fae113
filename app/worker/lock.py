"""The rebuild lock: one rebuild at a time, renewed while it works, its token fencing the publish.

A plain SET NX PX with a random token. A renewer thread pushes the expiry forward every third of the
lock time, so a rebuild longer than `rebuild_lock_seconds` keeps its lock; the expiry is still what
frees the lock of a worker that died. A rebuild that lost its lock anyway (a pause longer than the
lock time, Redis failing over) is stopped at the pointer flip: `VersionWriter.publish` checks the
token in the same script that flips the pointer, so the rebuild that took over publishes alone.
"""

from __future__ import annotations

import logging
import threading
import uuid
from types import TracebackType

import redis

log = logging.getLogger(__name__)

# KEYS[1] the lock; ARGV: token, milliseconds. Renew (or release) only a lock that is still ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RebuildLock:
    """Usage: `if lock.acquire(): with lock: ...` — the body runs with the lock renewed, then released."""

    def __init__(self, client: redis.Redis, key: str, seconds: float) -> None:
        self.client = client
        self.key = key
        self.token = uuid.uuid4().hex
        self.millis = max(1, int(seconds * 1000))
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew_until_stopped, name="rebuild-lock", daemon=True)

    def acquire(self) -> bool:
        return bool(self.client.set(self.key, self.token, nx=True, px=self.millis))

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.millis / 3000):
            try:
                renewed = self.client.eval(_RENEW, 1, self.key, self.token, self.millis)
            except (redis.RedisError, OSError) as exc:  # passing: two more tries before it expires
                log.warning("rebuild.lock_renew_failed", extra={"error": type(exc).__name__})
                continue
            if not renewed:
                self.lost.set()
                log.error("rebuild.lock_lost", extra={"key": self.key})
                return

    def __enter__(self) -> RebuildLock:
        self._renewer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._renewer.join()
        try:
            released = self.client.eval(_RELEASE, 1, self.key, self.token)
        except (redis.RedisError, OSError) as error:  # it expires on its own
            log.warning("rebuild.lock_release_failed", extra={"error": type(error).__name__})
            return
        if not released:
            log.warning("rebuild.lock_lost", extra={"key": self.key})
