"""Per-variant results of an experiment: one SQL pass builds a row per exposed shopper, numpy and
`stats` do the rest.

- exposures, clicks, add-to-carts, purchases and revenue by variant, attributed through the
  recommendation_id (`<strategy>.<hex>.e<id>v<k>`: the variant's index is in the id itself);
- conversion and revenue per exposed shopper: any purchase at or after their first exposure;
- CTR: attributed clicks over exposures, users as clusters (delta method).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.experiments import stats
from app.experiments.models import Experiment
from app.experiments.schemas import Metric

_REVENUE = "COALESCE(e.price, 0) * CASE WHEN e.value > 0 THEN e.value ELSE 1 END"
_ATTRIBUTED = text(f"""
    SELECT split_part(e.recommendation_id, '.', 3) AS tag,
           count(*) FILTER (WHERE e.type = 'click') AS clicks,
           count(*) FILTER (WHERE e.type = 'add_to_cart') AS carts,
           count(*) FILTER (WHERE e.type = 'purchase') AS purchases,
           COALESCE(sum({_REVENUE}) FILTER (WHERE e.type = 'purchase'), 0) AS revenue
    FROM events e WHERE e.ts >= :since AND split_part(e.recommendation_id, '.', 3) = ANY(:tags) GROUP BY 1
""")
_PER_USER = text(f"""
    WITH x AS (
        SELECT user_id, min(variant) AS variant, min(exposed_at) AS first_at,
               count(DISTINCT recommendation_id) AS exposures
        FROM experiment_exposures WHERE experiment_id = :id GROUP BY user_id
    ), clicks AS (
        SELECT e.user_id, count(*) AS clicks FROM events e
        WHERE e.ts >= :since AND e.type = 'click' AND split_part(e.recommendation_id, '.', 3) = ANY(:tags)
        GROUP BY e.user_id
    ), bought AS (
        SELECT x.user_id, count(*) AS purchases, sum({_REVENUE}) AS revenue
        FROM x JOIN events e ON e.user_id = x.user_id AND e.type = 'purchase' AND e.ts >= x.first_at
        GROUP BY x.user_id
    )
    SELECT x.variant, x.exposures, COALESCE(c.clicks, 0), COALESCE(b.purchases, 0), COALESCE(b.revenue, 0)
    FROM x LEFT JOIN clicks c USING (user_id) LEFT JOIN bought b USING (user_id)
""")


class Estimate(BaseModel):
    value: float | None
    lift: float | None = Field(default=None, description="Relative to control: (treatment - control) / control.")
    ci_low: float | None = Field(default=None, description="95 % CI of the lift (relative).")
    ci_high: float | None = None
    p_value: float | None = None


class VariantResult(BaseModel):
    name: str
    weight: float
    users: int
    exposures: int
    clicks: int
    add_to_carts: int
    purchases: int
    revenue: float
    conversion: Estimate = Field(description="Share of exposed shoppers who bought after their first exposure.")
    revenue_per_user: Estimate
    ctr: Estimate = Field(description="Attributed clicks / exposures, users clustered (delta method).")


class Results(BaseModel):
    experiment_id: int
    primary_metric: Metric
    variants: list[VariantResult]
    srm_p_value: float = Field(description="Chi-square of users per variant vs the weights; < 0.001 is a mismatch.")
    srm_warning: bool
    mde: float = Field(description="The relative lift the power note is computed for.")
    notes: list[str]


SRM_ALPHA = 0.001


def _clean(x: Any) -> float | None:
    v = float(x)
    return v if np.isfinite(v) else None


def _mean(x: Any) -> float:
    return float(x.mean()) if len(x) else float("nan")


def _estimate(value: Any, cmp: stats.Comparison | None = None, control: Any = None) -> Estimate:
    if cmp is None:
        return Estimate(value=_clean(value))
    lift, low, high = cmp.relative(control)
    return Estimate(value=_clean(value), lift=_clean(lift), ci_low=_clean(low), ci_high=_clean(high),
                    p_value=_clean(cmp.p_value))


async def compute(session: AsyncSession, row: Experiment, mde: float = stats.MDE) -> Results:
    variants = row.spec["variants"]
    names = [v["name"] for v in variants]
    tags = [f"e{row.id}v{k}" for k in range(len(variants))]
    # events before the start cannot answer one of its lists: the window keeps the scan on ix_events_ts
    since = row.starts_at
    attributed = {r.tag: r for r in await session.execute(_ATTRIBUTED, {"tags": tags, "since": since})}
    users = (await session.execute(_PER_USER, {"id": row.id, "tags": tags, "since": since})).all()
    arm = np.array([names.index(u[0]) if u[0] in names else -1 for u in users], dtype=np.int64)
    table = np.array([u[1:] for u in users], dtype=np.float64).reshape(len(users), 4)
    exposures, clicks, purchases, revenue = table.T
    bought = (purchases > 0).astype(np.float64)
    out: list[VariantResult] = []
    notes: list[str] = []
    sel0 = arm == 0
    for k, v in enumerate(variants):
        sel = arm == k
        a = attributed.get(tags[k])
        conv, rev = bought[sel], revenue[sel]
        ctr = stats.ratio(clicks[sel], exposures[sel]) if sel.sum() > 1 else stats.Ratio(np.nan, np.nan)
        if k == 0 or sel.sum() < 2 or sel0.sum() < 2:
            c_cmp = r_cmp = t_cmp = None
        else:
            c_cmp = stats.welch_samples(bought[sel0], conv)
            r_cmp = stats.welch_samples(revenue[sel0], rev)
            t_cmp = stats.ratio_diff(stats.ratio(clicks[sel0], exposures[sel0]), ctr)
        out.append(VariantResult(
            name=v["name"], weight=v["weight"], users=int(sel.sum()), exposures=int(exposures[sel].sum()),
            clicks=a.clicks if a else 0, add_to_carts=a.carts if a else 0, purchases=a.purchases if a else 0,
            revenue=round(float(a.revenue), 2) if a else 0.0,
            conversion=_estimate(_mean(conv), c_cmp, _mean(bought[sel0])),
            revenue_per_user=_estimate(_mean(rev), r_cmp, _mean(revenue[sel0])),
            ctr=_estimate(ctr.value, t_cmp, clicks[sel0].sum() / exposures[sel0].sum() if sel0.any() else np.nan),
        ))
    counts = [r.users for r in out]
    srm = stats.srm_p_value(counts, [v["weight"] for v in variants])
    if srm < SRM_ALPHA:
        notes.append(f"Sample ratio mismatch (p = {srm:.2g}): the users per variant do not follow the weights; "
                     "do not trust the lifts until the cause is found.")
    metric = row.spec["primary_metric"]
    column = {"conversion": bought, "revenue": revenue, "ctr": clicks / np.maximum(exposures, 1)}[metric]
    if sel0.sum() > 1:
        needed = stats.required_per_arm(float(column[sel0].mean()), float(column[sel0].var(ddof=1)), mde)
        smallest = min(counts)
        if smallest < needed:
            shown = "an unknown number of" if not np.isfinite(needed) else f"about {int(np.ceil(needed)):,}"
            notes.append(f"Underpowered: detecting a {mde:.0%} lift in {metric} needs {shown} users per "
                         f"variant (80 % power); the smallest variant has {smallest:,}.")
    else:
        notes.append("No exposed shoppers in control yet.")
    return Results(experiment_id=row.id, primary_metric=metric, variants=out, srm_p_value=srm,
                   srm_warning=srm < SRM_ALPHA, mde=mde, notes=notes)
