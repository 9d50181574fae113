"""`/dashboard`: the operator's page (admin only), its login, the try-it JSON endpoint and static files.

HTML routes answer a redirect to the login page without a session; the JSON route answers 401. None
of it is in the OpenAPI schema: it is a page for people, not part of the API contract.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from app.campaigns import export as campaign_export
from app.campaigns.schemas import ExportIn, TargetAudience
from app.common.types import ID_PATTERN
from app.dashboard import auth
from app.dashboard import service as dashboard_service
from app.errors import Unauthorized

HOME = "/dashboard"
LOGIN = "/dashboard/login"
STATIC = "/dashboard/static"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}

router = APIRouter(prefix=HOME, include_in_schema=False)
templates = Jinja2Templates(env=Environment(
    loader=PackageLoader("app.dashboard", "templates"), autoescape=select_autoescape(["html"]),
))


def _asset_version(name: str) -> str:
    """A short content hash for cache-busting `?v=` query strings."""
    data = resources.files("app.dashboard").joinpath("static", name).read_bytes()
    return hashlib.sha256(data).hexdigest()[:10]


ASSETS = {name: f"{STATIC}/{name}?v={_asset_version(name)}"
          for name in ("chart.umd.min.js", "dashboard.js", "dashboard.css")}


def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def _json_script(data: Any) -> Markup:
    """JSON safe to place inside <script type="application/json"> (no `</script>` breakout)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _login_page(
    request: Request, error: str | None = None, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return _secure(templates.TemplateResponse(
        request, "login.html", {"error": error, "assets": ASSETS}, status_code=status, headers=headers,
    ))


def _logged_in(request: Request, token: str) -> Response:
    response = RedirectResponse(HOME, status_code=303)
    auth.set_cookie(request, response, token)
    return _secure(response)


@router.get("", response_class=HTMLResponse)
async def dashboard(request: Request, key: Annotated[str | None, Query()] = None) -> Response:
    """The page; `?key=` logs in once and redirects here without the key in the URL."""
    if key is not None:
        try:
            token = await auth.login(request, key)
        except auth.LoginRefused as refused:
            return _login_page(request, refused.message, refused.status, refused.headers)
        return _logged_in(request, token)
    if await auth.session_key_id(request) is None:
        return _secure(RedirectResponse(LOGIN, status_code=303))
    state = request.app.state
    async with state.sessionmaker() as session:
        data = await dashboard_service.overview(
            session, state.redis, state.keys, state.model_cache, state.dashboard_cache
        )
    return _secure(templates.TemplateResponse(
        request, "dashboard.html", {"d": data, "data_json": _json_script(data), "assets": ASSETS},
    ))


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    if await auth.session_key_id(request) is not None:
        return _secure(RedirectResponse(HOME, status_code=303))
    return _login_page(request)


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request, key: Annotated[str, Form()] = "") -> Response:
    try:
        token = await auth.login(request, key)
    except auth.LoginRefused as refused:
        return _login_page(request, refused.message, refused.status, refused.headers)
    return _logged_in(request, token)


@router.post("/logout")
async def logout(request: Request) -> Response:
    await auth.logout(request)
    response = RedirectResponse(LOGIN, status_code=303)
    auth.clear_cookie(response)
    return _secure(response)


@router.get("/api/try")
async def try_user(
    request: Request,
    user_id: Annotated[str, Query(min_length=1, max_length=256, pattern=ID_PATTERN)],
) -> Response:
    """A shopper's recommendations (with reasons) and purchase propensity (with factors)."""
    if await auth.session_key_id(request) is None:
        raise Unauthorized("No dashboard session: log in at /dashboard/login.")
    state = request.app.state
    body = await dashboard_service.try_user(state.recommender, state.redis, state.keys, user_id)
    return _secure(JSONResponse(body))


@router.get("/export")
async def export_audience(
    request: Request,
    target: Annotated[str, Query(max_length=300)] = "purchase",
    min_probability: Annotated[float, Query(ge=0, le=1)] = 0.0,
    tier: Annotated[Literal["high", "medium", "low"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000_000)] = 100_000,
    n_items: Annotated[int, Query(ge=1, le=50)] = 5,
    fmt: Annotated[Literal["jsonl", "csv"], Query(alias="format")] = "csv",
) -> Response:
    """The "export audience" button: POST /v1/campaigns/export's rows as a download, for the session."""
    if await auth.session_key_id(request) is None:
        return _secure(RedirectResponse(LOGIN, status_code=303))
    body = ExportIn(audience=TargetAudience(target=target, min_probability=min_probability, tier=tier, limit=limit),
                    n_items=n_items, format=fmt)
    state = request.app.state
    checked = await campaign_export.check(state, body)
    filename = f"audience-{checked.replace(':', '-')}.{fmt}"
    return _secure(StreamingResponse(
        campaign_export.stream(state, body, checked), media_type="text/csv" if fmt == "csv" else "application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    ))


def install_dashboard(app: FastAPI) -> None:
    """Mount the dashboard: its routes, its static files, and key redaction in access logs."""
    app.state.dashboard_cache = dashboard_service.DashboardCache()
    app.mount(STATIC, StaticFiles(packages=[("app.dashboard", "static")]), name="dashboard-static")
    app.include_router(router)
    auth.install_log_redaction()
