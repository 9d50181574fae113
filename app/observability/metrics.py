"""Prometheus metrics counted in-process: HTTP traffic, ingest outcomes, Redis fallbacks.

Any layer may import this module (it depends on prometheus_client only) and call the small functions
below; the metric objects themselves stay private so label sets stay bounded:

- HTTP metrics are labelled by the route *template* (`/v1/users/{user_id}/recommendations`), never the
  raw path, so ids never reach a label and a scanner probing random URLs adds one `unmatched` series.
- Event types are labelled only for the known types (anything else would have been rejected anyway).
- Fallback paths must be a short fixed name chosen by the caller (`"recommendations"`), never an id.

Several processes (`shopmind serve --workers N`): prometheus_client chooses its value storage when the
first metric is built, from the environment variable PROMETHEUS_MULTIPROC_DIR (its own convention, so
it is read here rather than in Settings). `shopmind serve` sets it to a fresh directory when N > 1; each
worker then writes its samples to files there and any worker's scrape sums them all (`render`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from app.eventlog import EVENT_TYPES
from app.observability.multiprocess import MULTIPROCESS_ENV

_multiprocess_dir = os.environ.get(MULTIPROCESS_ENV)  # fixed at import, as prometheus_client does

_REQUESTS = Counter(
    "shopmind_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
_LATENCY = Histogram(
    "shopmind_http_request_duration_seconds",
    "Time from request start to the end of the response body, by method and route template.",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
_INGESTED = Counter("shopmind_events_ingested", "Events stored (newly accepted), by event type.", ["type"])
_DUPLICATES = Counter("shopmind_events_duplicate", "Events not stored again: their event_id was seen before.")
_REJECTED = Counter("shopmind_events_rejected", "Events refused by validation (bad field, bad timestamp).")
_REALTIME_SKIPPED = Counter(
    "shopmind_realtime_skipped_events",
    "Accepted events whose real-time Redis update was skipped because Redis was unreachable "
    "(they are stored; the next rebuild catches up).",
)
_REDIS_FALLBACKS = Counter(
    "shopmind_redis_fallbacks",
    "Requests served by a degraded path because Redis failed, by code path.",
    ["path"],
)

for _type in EVENT_TYPES:  # every series exists from the start, so rate() works from the first scrape
    _INGESTED.labels(type=_type)

UNMATCHED_ROUTE = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one HTTP request. `route` is the route template (or UNMATCHED_ROUTE), never a raw path."""
    method = method if method in _METHODS else "other"
    _REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    _LATENCY.labels(method=method, route=route).observe(seconds)


def observe_ingest(accepted_types: Mapping[str, int], duplicates: int, rejected: int) -> None:
    """Count one ingest call's outcome: accepted events per type, duplicates, rejections."""
    for event_type, n in accepted_types.items():
        if n > 0 and event_type in EVENT_TYPES:
            _INGESTED.labels(type=event_type).inc(n)
    if duplicates > 0:
        _DUPLICATES.inc(duplicates)
    if rejected > 0:
        _REJECTED.inc(rejected)


def realtime_skipped(events: int) -> None:
    """Count accepted events whose real-time Redis update could not be applied."""
    if events > 0:
        _REALTIME_SKIPPED.inc(events)


def redis_fallback(path: str) -> None:
    """Count one request served without Redis. `path` is a fixed code-path name, never an id."""
    _REDIS_FALLBACKS.labels(path=path).inc()


def multiprocess_mode() -> bool:
    return _multiprocess_dir is not None


class _Chain:
    """Several collectors exposed as one, for a single `generate_latest` call."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


def render(*extra: Collector) -> bytes:
    """The text exposition of this process's metrics (all workers' in multiprocess mode) plus `extra`."""
    if _multiprocess_dir is not None:
        base: Collector = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(base, path=_multiprocess_dir)  # type: ignore[no-untyped-call]
    else:
        base = REGISTRY
    return generate_latest(_Chain([base, *extra]))
