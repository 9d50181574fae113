"""The FastAPI application: create_app() wires settings, Postgres, Redis, auth and the routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.service import KeyVerifier
from app.campaigns.router import router as campaigns_router
from app.catalog.router import router as catalog_router
from app.dashboard.router import install_dashboard
from app.db import make_async_engine
from app.events.router import router as events_router
from app.experiments.router import router as experiments_router
from app.http import ERROR_RESPONSES, BodySizeLimit, JsonBodyOnly, envelope, install_error_handlers
from app.observability.router import install_metrics
from app.placements.router import router as placements_router
from app.placements.serving import PlacementBook
from app.propensity.router import router as propensity_router
from app.ratelimit import AddressLimiter, RateLimiter
from app.recommend.degraded import DegradedPopularity
from app.recommend.model_cache import ModelCache
from app.recommend.router import router as recommend_router
from app.recommend.service import RecommendService
from app.runs.router import router as runs_router
from app.settings import Settings, get_settings
from app.store.client import make_async_redis
from app.store.keys import Keys
from app.triggers.router import router as triggers_router
from app.users.router import router as users_router
from app.value.router import router as value_router
from app.web import install_browser_support
from app.webhooks.router import router as webhooks_router

log = logging.getLogger(__name__)

DESCRIPTION = """
Hybrid recommendations and propensity scores for web shops.

Authenticate with an API key: `Authorization: Bearer <key>` or `X-API-Key: <key>`.
Scopes: `track` (shop pages: `POST /v1/events`, browser event types only), `ingest` (events, catalog,
users), `read` (recommendations, scores), `admin` (everything).
Errors are `{"error": "<Code>", "detail": ...}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("create_app needs SHOPMIND_DATABASE_URL and SHOPMIND_REDIS_URL "
                           "(`shopmind serve` starts embedded servers and sets them).")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert settings.database_url and settings.redis_url
        engine = make_async_engine(settings.database_url)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False, class_=AsyncSession)
        app.state.redis = make_async_redis(settings.redis_url, cluster=settings.redis_cluster)
        serving_redis = make_async_redis(settings.redis_url, cluster=settings.redis_cluster, command_timeouts=False)
        app.state.keys = Keys.of(settings)
        app.state.model_cache = ModelCache(serving_redis, app.state.keys)
        app.state.recommender = RecommendService(serving_redis, app.state.keys, app.state.model_cache)
        app.state.placements = PlacementBook(app.state.sessionmaker, serving_redis, app.state.keys)
        app.state.degraded_popularity = DegradedPopularity(
            app.state.sessionmaker, settings.popularity_half_life_days
        )
        admin = settings.admin_key.get_secret_value() if settings.admin_key else None
        app.state.key_verifier = KeyVerifier(app.state.sessionmaker, admin, settings.key_cache_seconds)
        app.state.rate_limiter = RateLimiter(app.state.redis, app.state.keys, settings)
        app.state.auth_failures = AddressLimiter(
            app.state.redis, app.state.keys, "auth", settings.auth_failures_per_minute
        )
        app.state.login_attempts = AddressLimiter(
            app.state.redis, app.state.keys, "login", settings.login_attempts_per_minute
        )
        app.state.redis_fallbacks = {}  # path -> requests served without their Redis update
        try:
            yield
        finally:
            await serving_redis.aclose()
            await app.state.redis.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Shopmind",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=ERROR_RESPONSES,  # the error envelope, documented on every operation
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(JsonBodyOnly)
    install_metrics(app, settings)  # counts every request by route template; GET /metrics
    install_browser_support(app, settings)  # /static/shopmind.js; CORS outermost
    install_error_handlers(app)
    # Routes are tried in order, so the two hot paths come first (no path of theirs overlaps another's):
    # a recommendation no longer tries some thirty catalog, user and run routes before its own.
    app.include_router(recommend_router)
    app.include_router(events_router)
    app.include_router(catalog_router)
    app.include_router(users_router)
    app.include_router(runs_router)
    app.include_router(propensity_router)
    app.include_router(value_router)
    app.include_router(placements_router)
    app.include_router(experiments_router)
    app.include_router(webhooks_router)
    app.include_router(triggers_router)
    app.include_router(campaigns_router)
    install_dashboard(app)  # GET /dashboard: the operator page (admin session), not in the schema

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process answers (no I/O)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Readiness: Postgres and Redis reachable, model present")
    async def readyz(request: Request) -> object:
        state = request.app.state
        checks: dict[str, str] = {}
        try:
            async with state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["postgres"] = "ok"
        except Exception as exc:  # any failure means "not ready", reported by name
            checks["postgres"] = f"error: {type(exc).__name__}"
        try:
            version = await state.redis.get(state.keys.model_pointer())
            checks["redis"] = "ok"
            checks["model"] = version.decode() if version else "none yet (popularity serving)"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
        ready = checks["postgres"] == "ok" and checks["redis"] == "ok"
        if not ready:
            return envelope(503, "ServiceUnavailable", checks, {"Retry-After": "5"})
        return {"status": "ready", **checks}

    return app
