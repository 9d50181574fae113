"""What shop pages need to call Shopmind from the browser: CORS and the `shopmind.js` snippet."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from app.settings import Settings


def install_browser_support(app: FastAPI, settings: Settings) -> None:
    """Serve `/static/shopmind.js`; answer CORS for the configured shop origins (none: no CORS headers).

    Browsers authenticate with the `X-API-Key` header (an ingest-scope key), never cookies, so
    credentials stay off and the allowed headers are only those the snippet and API clients send.
    Add this after the other middleware: CORS must be outermost so error answers carry its headers too.
    """
    app.mount("/static", StaticFiles(packages=[("app", "static")]), name="static")
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization"],
            allow_credentials=False,
            max_age=600,
        )
