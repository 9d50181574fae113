"""Bookkeeping for requests served without their Redis side effect (Redis unreachable).

Postgres is the source of truth, so ingest and catalog writes still succeed when Redis is down; the
real-time state catches up at the next rebuild / re-hydration. Each such request is counted twice: in
`app.state.redis_fallbacks` (path -> count, in-process, no Prometheus needed) and in the Prometheus
counter `shopmind_redis_fallbacks{path}`.
"""

from __future__ import annotations

import logging
from typing import Any

from app.observability import metrics

log = logging.getLogger(__name__)


def note_redis_fallback(state: Any, path: str) -> None:
    """Count one request that skipped its Redis update. `path`: a short fixed name, never an id."""
    counts: dict[str, int] = getattr(state, "redis_fallbacks", None) or {}
    counts[path] = counts.get(path, 0) + 1
    state.redis_fallbacks = counts
    log.warning("redis.fallback", extra={"path": path})
    metrics.redis_fallback(path)
