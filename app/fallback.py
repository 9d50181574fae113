"""Bookkeeping for requests served without their Redis side effect (Redis unreachable).

Postgres is the source of truth, so ingest and catalog writes still succeed when Redis is down; the
real-time state catches up at the next rebuild / re-hydration. Each such request is counted here: in
`app.state.redis_fallbacks` (path -> count, always available) and in the Prometheus counter of
`app.observability.metrics.redis_fallback` when that module is installed.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def _metric_hook() -> Callable[[str], None] | None:
    try:
        metrics: Any = importlib.import_module("app.observability.metrics")
    except ImportError:
        return None
    hook = getattr(metrics, "redis_fallback", None)
    return hook if callable(hook) else None


_hook = _metric_hook()


def note_redis_fallback(state: Any, path: str) -> None:
    """Count one request on `path` (a route template, e.g. "/v1/events") that skipped its Redis update."""
    counts: dict[str, int] = getattr(state, "redis_fallbacks", None) or {}
    counts[path] = counts.get(path, 0) + 1
    state.redis_fallbacks = counts
    log.warning("redis.fallback", extra={"path": path})
    if _hook is not None:
        _hook(path)
