"""ASGI entry point for uvicorn: `uvicorn app.asgi:app` (settings from the environment)."""

import gc

from app.main import create_app

GEN0_THRESHOLD = 50_000

app = create_app()

# Everything imported so far (modules, pydantic validators, numpy) lives as long as the process. Freezing
# it keeps the collector from re-walking those objects on each full collection, which a 1,000-event
# ingest call (thousands of fresh dicts and tuples) would otherwise trigger every few calls.
gc.freeze()
# A request's objects (a batch's dicts and rows, an answer's items) are freed by reference counting when
# it ends. With the default first threshold (700 allocations) the collector examines them while they are
# still alive, promotes them and later re-walks them in older generations: about a sixth of a 1,000-event
# call's instructions (callgrind). At 50,000 they are gone by the time it looks; cycles wait a little longer.
gc.set_threshold(GEN0_THRESHOLD, 20, 10)
