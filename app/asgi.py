"""ASGI entry point for uvicorn: `uvicorn app.asgi:app` (settings from the environment)."""

import gc

from app.main import create_app

app = create_app()

# Everything imported so far (modules, pydantic validators, numpy) lives as long as the process. Freezing
# it keeps the collector from re-walking those objects on each full collection, which a 1,000-event
# ingest call (thousands of fresh dicts and tuples) would otherwise trigger every few calls.
gc.freeze()
