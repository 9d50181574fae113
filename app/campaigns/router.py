from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from app.auth.deps import require
from app.campaigns import export
from app.campaigns.schemas import ExportIn, ItemAudience
from app.http import PLACEMENT_NOT_FOUND

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], dependencies=[Depends(require("read"))])

_STREAM: dict[int | str, dict[str, Any]] = {200: {"description": "One row per shopper, streamed.",
                 "content": {"application/x-ndjson": {}, "text/csv": {}}}}


@router.post("/export", response_class=StreamingResponse, responses={**_STREAM, **PLACEMENT_NOT_FOUND})
async def export_campaign(body: ExportIn, request: Request) -> StreamingResponse:
    """One row per shopper of the audience: their probability and tier for the target, and their own top
    `n_items` items (titles, prices) with the `recommendation_id` to send back on clicks and purchases.
    Streamed a page at a time, so an audience of any size needs no more memory than one page."""
    state = request.app.state
    target = await export.check(state, body)
    media = "text/csv" if body.format == "csv" else "application/x-ndjson"
    name = target.replace(":", "-")
    if isinstance(body.audience, ItemAudience):  # any id may reach a header: letters, digits, - _ . only
        name = "item-" + re.sub(r"[^A-Za-z0-9_.-]", "_", body.audience.item_id)[:64]
    filename = f"campaign-{name}.{body.format}"
    return StreamingResponse(export.stream(state, body, target), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})
