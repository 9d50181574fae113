"""`GET /metrics` and the middleware that counts every request by route template."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.deps import require
from app.observability.metrics import UNMATCHED_ROUTE, observe_request, render
from app.observability.snapshot import SnapshotCache
from app.settings import Settings

SNAPSHOT_TTL_SECONDS = 10.0


class HttpMetrics:
    """ASGI middleware counting requests and timing them by route template.

    The router records the matched route in `scope["route"]` (the same dict this middleware holds), so
    the template is read after the app returns; requests that matched no route share one label.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            observe_request(str(scope.get("method", "GET")), route, status, time.perf_counter() - start)


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus metrics in the text exposition format.

    No API key is needed by default — the Prometheus convention, so a scraper needs no secret; keep the
    port off the public internet, or set `SHOPMIND_METRICS_REQUIRE_KEY=true` to demand an admin-scope key.
    Nothing here identifies anyone: labels are route templates, event types, rebuild stage and metric
    names, table names and the model version — never API keys, user ids or item ids.
    """
    state = request.app.state
    snapshot = await state.metrics_snapshot.get(state.engine, state.redis, state.keys)
    return Response(render(snapshot), media_type=CONTENT_TYPE_LATEST)


def install_metrics(app: FastAPI, settings: Settings) -> None:
    """Count every request by route template and serve `GET /metrics`."""
    app.state.metrics_snapshot = SnapshotCache(ttl=SNAPSHOT_TTL_SECONDS)
    app.add_middleware(HttpMetrics)
    router = APIRouter(tags=["ops"])
    router.add_api_route(
        "/metrics",
        metrics_endpoint,
        methods=["GET"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Text exposition format"}},
        dependencies=[Depends(require("admin"))] if settings.metrics_require_key else [],
    )
    app.include_router(router)
