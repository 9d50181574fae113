"""Checking an ingest batch event by event: every bad event is named with its reason, none sinks the batch.

The whole batch is validated in one pydantic call; only when that fails are the events validated one by
one to say which and why. The result is a list of rows in the events table's column order, de-duplicated
by `event_id` inside the batch, ready for COPY.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Annotated, Any, NamedTuple

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from pydantic_core import TzInfo
from typing_extensions import TypedDict

from app.events.schemas import EventIn, RejectedEvent, event_adapter
from app.settings import Settings

_batch_adapter = TypeAdapter(list[EventIn])


@with_config(ConfigDict(extra="forbid"))
class _Body(TypedDict):
    events: Annotated[list[EventIn], Field(min_length=1)]


_body_adapter = TypeAdapter(_Body)

_EPOCH_DAY = date(1970, 1, 1).toordinal()
_MICROSECOND = timedelta(microseconds=1)
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_POSTGRES_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970
_FIXED_OFFSET = (TzInfo, timezone)
"""tzinfo types whose offset is one for every datetime: one `utcoffset()` call per distinct offset."""


class EventRow(NamedTuple):
    """One event as stored: the events table's columns in order, then the timestamp in epoch seconds.

    `ts` is timestamptz's binary form, microseconds since 2000-01-01 UTC, which COPY sends as an int8
    (`COPY_TYPES`): psycopg's datetime dumper calls back into pydantic's tzinfo for every row.
    """

    event_id: str
    user_id: str
    item_id: str | None
    type: str
    value: float | None
    price: float | None
    ts: int
    session_id: str | None
    recommendation_id: str | None
    properties: dict[str, Any] | None
    epoch: float


COLUMNS: tuple[str, ...] = EventRow._fields[:-1]
COLUMN_TYPES = ("text", "text", "text", "text", "float8", "float8", "timestamptz", "text", "text", "jsonb")
"""Postgres types of COLUMNS, for the staging table."""
COPY_TYPES = tuple("int8" if kind == "timestamptz" else kind for kind in COLUMN_TYPES)
"""How binary COPY sends each of COLUMNS (see `EventRow.ts`)."""


@dataclass
class CheckedBatch:
    rows: list[EventRow] = field(default_factory=list)
    repeated_ids: list[str] = field(default_factory=list)
    """Event ids given twice in the batch: the later ones are duplicates of the first."""
    rejected: list[RejectedEvent] = field(default_factory=list)


def _readable(error: ValidationError) -> str:
    parts = []
    for e in error.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"] if p != "__root__")
        parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
    return "; ".join(parts)


def valid_body_events(body: bytes) -> list[EventIn] | None:
    """The events of a request body valid throughout — the usual case, in one call from JSON bytes —
    or None when anything in it is wrong, to be told apart event by event."""
    try:
        return _body_adapter.validate_json(body)["events"]
    except ValidationError:
        return None


def _parse(raw: list[Any]) -> tuple[list[EventIn | None], dict[int, str]]:
    try:
        return list(_batch_adapter.validate_python(raw)), {}
    except ValidationError:
        pass
    parsed: list[EventIn | None] = []
    errors: dict[int, str] = {}
    for index, raw_event in enumerate(raw):
        try:
            parsed.append(event_adapter.validate_python(raw_event))
        except ValidationError as exc:
            parsed.append(None)
            errors[index] = _readable(exc)
    return parsed, errors


def _offset_us(ts: datetime) -> int:
    offset = ts.utcoffset()
    return 0 if offset is None else offset // _MICROSECOND


def check_batch(raw: list[Any], settings: Settings, now: datetime, *, validated: bool = False) -> CheckedBatch:
    """`validated`: the events passed `EventIn` already (see `valid_body_events`).

    This loop runs once per ingested event: locals, no helper calls on the usual path. A row's `epoch`
    equals `timestamp.timestamp()` (whole microseconds over 10**6) but is worked out from the fields:
    pydantic's own tzinfo makes `timestamp()` call back into Python, and a batch has few distinct offsets.
    """
    parsed, errors = (raw, {}) if validated else _parse(raw)
    batch = CheckedBatch()
    rows, rejected, repeated = batch.rows, batch.rejected, batch.repeated_ids
    taken: set[str] = set()
    latest = now.timestamp() + settings.max_future_seconds
    default_us = ((now if now.tzinfo is not None else now.replace(tzinfo=UTC)) - _UNIX_EPOCH) // _MICROSECOND
    earliest = settings.min_timestamp
    offsets: dict[tzinfo | None, int] = {None: 0}  # naive timestamps are UTC
    new_row = tuple.__new__
    for index, event in enumerate(parsed):
        if event is None:
            raw_id = raw[index].get("event_id") if isinstance(raw[index], dict) else None
            rejected.append(RejectedEvent(
                index=index, event_id=raw_id if isinstance(raw_id, str) else None, error=errors[index]))
            continue
        timestamp = event.get("timestamp")
        if timestamp is None:
            us = default_us
        else:
            tz = timestamp.tzinfo
            offset = offsets.get(tz)
            if offset is None:
                offset = _offset_us(timestamp)
                if type(tz) in _FIXED_OFFSET:
                    offsets[tz] = offset
            us = (((timestamp.toordinal() - _EPOCH_DAY) * 86400 + timestamp.hour * 3600 + timestamp.minute * 60
                   + timestamp.second) * 1_000_000 + timestamp.microsecond - offset)
        epoch = us / 1_000_000
        event_id = event.get("event_id")
        item_id = event.get("item_id")
        event_type = event["type"]
        error = None
        if item_id is None and event_type != "purchase":
            error = f"item_id is required for `{event_type}` events"
        elif event_type == "rating" and event.get("value") is None:
            error = "rating events need a `value`"
        elif epoch > latest:
            error = f"timestamp: more than {settings.max_future_seconds:g} s in the future"
        elif epoch < earliest:
            error = "timestamp: before 2000-01-01"
        if error is not None:
            rejected.append(RejectedEvent(index=index, event_id=event_id, error=error))
            continue
        if event_id is None:
            event_id = uuid.uuid4().hex
        elif event_id in taken:
            repeated.append(event_id)
            continue
        taken.add(event_id)
        rows.append(new_row(EventRow, (  # EventRow(...) without its Python-level __new__
            event_id, event["user_id"], item_id, event_type, event.get("value"), event.get("price"),
            us - _POSTGRES_EPOCH_US, event.get("session_id"), event.get("recommendation_id"),
            event.get("properties"), epoch,
        )))
    return batch
