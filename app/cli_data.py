"""`shopmind import` and `shopmind export`: events in and out of files.

Import goes through the API's own code path — each event validated by `EventIn`, stored by
`app.events.service.ingest` (which also updates the real-time Redis state) — in batches of up to 5,000,
so a file behaves exactly like the same events POSTed to /v1/events, and re-running an import stores
nothing twice (duplicates are recognised by `event_id`). Export streams the events table through a
server-side cursor, so memory stays flat however large the table; its output imports back unchanged.
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import click
import orjson
from tqdm import tqdm

from app.events.schemas import EVENT_FIELDS

FIELDS = EVENT_FIELDS
REQUIRED = ("user_id", "type")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


@dataclass
class Totals:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    realtime_skipped_batches: int = 0
    reasons: list[str] = field(default_factory=list)  # the first few, "line N: why"

    def reject(self, line: int, why: str, keep: int) -> None:
        self.rejected += 1
        if len(self.reasons) < keep:
            self.reasons.append(f"line {line}: {why}")


# A record is (line number, event dict) or (line number, reason it could not be read).
Record = tuple[int, dict[str, Any] | str]


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def _csv_records(f: IO[str]) -> Iterator[Record]:
    """Rows of a CSV with a header naming the event fields; empty cells are absent fields."""
    reader = csv.DictReader(f)
    header = reader.fieldnames or []
    unknown = sorted(set(header) - set(FIELDS))
    missing = [c for c in REQUIRED if c not in header]
    if unknown or missing:
        raise click.ClickException(
            f"CSV header: unknown columns {unknown}, missing {missing}; columns are {', '.join(FIELDS)}"
            if unknown else f"CSV header lacks the required columns {missing}"
        )
    for row in reader:
        event: dict[str, Any] = {k: v for k, v in row.items() if k is not None and v not in ("", None)}
        if None in row:
            yield reader.line_num, "more cells than header columns"
            continue
        if "properties" in event:
            try:
                event["properties"] = json.loads(event["properties"])
            except ValueError:
                yield reader.line_num, "properties: not valid JSON"
                continue
        yield reader.line_num, event


def _jsonl_records(f: IO[str]) -> Iterator[Record]:
    """One JSON object per line; blank lines are skipped."""
    for line_no, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            yield line_no, f"invalid JSON ({exc.msg})"
            continue
        except ValueError:  # e.g. undecodable surrogates
            yield line_no, "invalid JSON"
            continue
        yield (line_no, event) if isinstance(event, dict) else (line_no, "not a JSON object")


async def _ingest_file(
    records: Iterator[Record], database_url: str, redis_url: str, redis_prefix: str,
    batch_size: int, totals: Totals, keep: int, bar: tqdm[Any],
) -> None:
    from app.db import make_async_engine
    from app.events import service
    from app.fallback import record_skipped_write
    from app.settings import get_settings
    from app.store.client import make_async_redis
    from app.store.keys import Keys

    settings = get_settings()
    engine = make_async_engine(database_url, pool_size=2)
    redis = make_async_redis(redis_url, cluster=settings.redis_cluster)
    keys = replace(Keys.of(settings), prefix=redis_prefix)
    last_line = 0

    async def store(batch: list[dict[str, Any]], lines: list[int]) -> None:
        result = await service.ingest(engine, redis, keys, settings, batch)
        totals.accepted += result.accepted
        totals.duplicates += result.duplicates
        for rejected in result.errors:
            totals.reject(lines[rejected.index], rejected.error, keep)
        if not result.realtime_updated:
            totals.realtime_skipped_batches += 1
            await record_skipped_write(engine, "import.realtime")

    try:
        batch: list[dict[str, Any]] = []
        lines: list[int] = []
        for line_no, record in records:
            if isinstance(record, str):
                totals.reject(line_no, record, keep)
            else:
                batch.append(record)
                lines.append(line_no)
            if len(batch) >= batch_size:
                await store(batch, lines)
                batch, lines = [], []
                bar.update(line_no - last_line)
                last_line = line_no
        if batch:
            await store(batch, lines)
        bar.update(bar.total - last_line if bar.total else 0)
    finally:
        await redis.aclose()
        await engine.dispose()


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["auto", "csv", "jsonl"]), default="auto",
              show_default=True,
              help="File format; auto picks it from the extension (.csv, or .jsonl/.ndjson/.json).")
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 10_000),
              help="Events validated and stored per transaction.")
@click.option("--show-errors", default=5, show_default=True, type=click.IntRange(min=0),
              help="How many rejection reasons to print.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar on standard error.")
def import_events(file: Path, fmt: str, batch_size: int, show_errors: int, progress: bool) -> None:
    """Import events from FILE: a .csv with a header row, or .jsonl with one JSON event per line.

    Fields (CSV columns) are those of POST /v1/events: event_id, user_id, item_id, type, value, price,
    timestamp (ISO-8601 or epoch seconds), session_id, recommendation_id, properties (a JSON object;
    in CSV, as JSON text). Each event is validated and stored exactly as the API would; duplicates (by
    event_id) are skipped, so running an import twice is safe. Unknown users and items are created.
    """
    from app.cli import _servers
    from app.migrate import upgrade
    from app.settings import get_settings

    if fmt == "auto":
        fmt = "jsonl" if file.suffix.lower() in JSONL_SUFFIXES else "csv"
        if file.suffix.lower() not in (".csv", *JSONL_SUFFIXES):
            raise click.UsageError(f"cannot tell the format of {file.name}: pass --format csv|jsonl")
    embedded = get_settings().embedded
    totals = Totals()
    with _servers() as settings:
        assert settings.database_url and settings.redis_url
        if embedded:  # a fresh private database: give it the schema first
            upgrade(settings.database_url)
        with file.open(newline="", encoding="utf-8-sig") as f, tqdm(
            total=_count_lines(file), unit="line", unit_scale=True, disable=not progress, desc="import"
        ) as bar:
            records = _csv_records(f) if fmt == "csv" else _jsonl_records(f)
            asyncio.run(_ingest_file(records, settings.database_url, settings.redis_url,
                                     settings.redis_prefix, batch_size, totals, show_errors, bar))
    click.echo(f"{file.name}: {totals.accepted:,} accepted, {totals.duplicates:,} duplicates, "
               f"{totals.rejected:,} rejected")
    for reason in totals.reasons:
        click.echo(f"  {reason}")
    if totals.rejected > len(totals.reasons):
        click.echo(f"  … and {totals.rejected - len(totals.reasons):,} more rejected")
    if totals.realtime_skipped_batches:
        click.echo("Redis was unreachable for some batches: the events are stored and real-time state "
                   "catches up at the next rebuild.", err=True)


_EXPORT = """
SELECT event_id, user_id, item_id, type, value, price, ts, session_id, recommendation_id, properties
FROM events ORDER BY id
"""
_EXPORT_COLUMNS = ("event_id", "user_id", "item_id", "type", "value", "price", "timestamp", "session_id",
                   "recommendation_id", "properties")


@click.command("export")
@click.option("--out", default="-", show_default=True,
              type=click.Path(dir_okay=False, writable=True, allow_dash=True),
              help="File to write; '-' writes to standard output.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar on standard error.")
def export_events(out: str, progress: bool) -> None:
    """Write every stored event as JSONL, oldest first, in the POST /v1/events format.

    Streamed through a server-side cursor (memory stays flat); timestamps in UTC ISO-8601; absent
    fields omitted. The output imports back with `shopmind import` (nothing is stored twice).
    """
    import psycopg

    from app.cli import _servers
    from app.db import libpq_url

    written = 0
    with _servers() as settings:
        assert settings.database_url
        with psycopg.connect(libpq_url(settings.database_url)) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            estimate = conn.execute(  # events is partitioned: its analyzed partitions' estimates
                "SELECT coalesce(sum(c.reltuples), 0)::bigint FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'events'::regclass AND c.reltuples > 0")
            row = estimate.fetchone()
            total = int(row[0]) if row and int(row[0]) > 0 else None
            with click.open_file(out, "wb") as sink, conn.cursor(name="shopmind_export") as cursor, tqdm(
                total=total, unit="event", unit_scale=True, disable=not progress, desc="export"
            ) as bar:
                cursor.itersize = 10_000
                cursor.execute(_EXPORT)
                for values in cursor:
                    event = {k: v for k, v in zip(_EXPORT_COLUMNS, values, strict=True) if v is not None}
                    sink.write(orjson.dumps(event) + b"\n")
                    written += 1
                    if written % 10_000 == 0:
                        bar.update(10_000)
                bar.update(written % 10_000)
    click.echo(f"{written:,} events exported", err=True)
