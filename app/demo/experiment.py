"""The demo's placements and running experiment, with synthetic shoppers who answer one variant better.

`home.row` (user kind) and `product.similar` (item kind) are created, and an experiment on `home.row`
pits the shop's hybrid (control) against a content-leaning variant. Four in five demo shoppers were
shown the row over the last three days; those in the treatment click and buy more often (CTR 14 %
vs 10 % an exposure, conversion 12 % vs 7 %), so the dashboard's panel shows a real, significant lift.
The shares are drawn exactly (which exposures click, which shoppers buy, by a seeded permutation):
the salt, hence the split, is new at every load, and a Bernoulli draw per shopper would now and then
leave the demo's lift short of significance.
Exposures go straight into the log table (as the worker's COPY would) and the events through ingest.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.experiments import assign, exposures
from app.experiments import service as experiments_service
from app.experiments.schemas import ExperimentIn
from app.placements import service as placements_service
from app.placements.schemas import PlacementIn

HOME, SIMILAR = "home.row", "product.similar"
CTR = (0.10, 0.14)
CONVERSION = (0.07, 0.12)
EXPOSED_SHARE = 0.8
DAYS = 3


async def create(
    sessions: async_sessionmaker[AsyncSession], users: list[str], items: list[dict[str, Any]], seed: int,
) -> tuple[int, list[dict[str, Any]]]:
    """Create the placements and the experiment, log its exposures; returns the experiment's id and
    the events the exposed shoppers sent back (for ingest)."""
    now = datetime.now(UTC)
    body = ExperimentIn.model_validate({
        "name": "Home row: shop blend vs content-leaning", "placement": HOME, "primary_metric": "conversion",
        "variants": [{"name": "control", "weight": 1, "overrides": {}},
                     {"name": "content", "weight": 1, "overrides": {"strategy": "hybrid", "alpha": 0.5,
                                                                     "diversity": {"max_per_category": 2}}}],
        "start": now - timedelta(days=DAYS), "end": now + timedelta(days=14),
    })
    async with sessions() as session, session.begin():
        await placements_service.put_placement(session, HOME, PlacementIn(kind="user", n=10))
        await placements_service.put_placement(session, SIMILAR, PlacementIn.model_validate(
            {"kind": "item", "n": 6, "diversity": {"max_per_category": 3}}))
        experiment = await experiments_service.create(session, body)
        salt = (await experiments_service.get_row(session, experiment.id)).salt
    rng = np.random.default_rng(seed)
    exposed = [u for u in users if rng.random() < EXPOSED_SHARE]
    cuts = assign.bounds([v.weight for v in body.variants])
    arms = np.array([assign.variant_index(experiment.id, salt, u, cuts) for u in exposed], dtype=np.int64)
    shows = rng.integers(1, 6, size=len(exposed))
    first = time.time() - DAYS * 86400 + rng.random(len(exposed)) * (DAYS - 1) * 86400
    slot = np.repeat(np.arange(len(exposed)), shows)  # exposure -> its shopper
    clicked = np.zeros(len(slot), dtype=bool)
    bought = np.zeros(len(exposed), dtype=bool)
    for arm in range(len(body.variants)):
        _exact_share(rng, clicked, np.flatnonzero(arms[slot] == arm), CTR[arm])
        _exact_share(rng, bought, np.flatnonzero(arms == arm), CONVERSION[arm])
    rows: list[exposures.Row] = []
    events: list[dict[str, Any]] = []
    priced = [i for i in items if i.get("price")]
    e = 0
    for k, user in enumerate(exposed):
        arm, name = int(arms[k]), body.variants[int(arms[k])].name
        for s in range(int(shows[k])):
            token = f"{rng.integers(2**63):016x}"
            ts = first[k] + s * 3600.0
            rows.append((experiment.id, name, user, token, datetime.fromtimestamp(ts, UTC)))
            rec = f"hybrid.{token}.e{experiment.id}v{arm}"
            item = priced[int(rng.integers(len(priced)))]
            if clicked[e]:
                events.append(_event(f"demo-x-{user}-{s}-c", user, item, "click", ts + 30, rec))
            if s == 0 and bought[k]:
                events.append(_event(f"demo-x-{user}-p", user, item, "purchase", ts + 600, rec, item["price"]))
            e += 1
    async with sessions() as session, session.begin():
        conn = await session.connection()
        driver: Any = (await conn.get_raw_connection()).driver_connection
        async with driver.cursor() as cur, cur.copy(exposures.COPY) as copy:
            for row in rows:
                await copy.write_row(row)
    return experiment.id, events


def _exact_share(rng: np.random.Generator, flags: Any, among: Any, share: float) -> None:
    flags[rng.permutation(among)[: round(share * len(among))]] = True


def _event(event_id: str, user: str, item: dict[str, Any], kind: str, ts: float, rec: str,
           price: float | None = None) -> dict[str, Any]:
    event = {"event_id": event_id, "user_id": user, "item_id": item["item_id"], "type": kind, "timestamp": ts,
             "recommendation_id": rec}
    return event if price is None else {**event, "price": price}
