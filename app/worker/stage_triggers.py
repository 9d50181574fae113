"""After a rebuild publishes: arm `propensity_crossed` triggers for shoppers newly in the `high` tier.

The previous rebuild's high tiers are rows in Postgres (`propensity_high_tiers`), so the comparison is
one set-based statement per target and survives restarts and Redis losses. It runs only for targets a
propensity_crossed trigger watches; the first rebuild after one is defined records the baseline and
arms nobody (everyone already high would otherwise "cross" at once).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray

from app.propensity.algo_score import TIERS
from app.worker.stage_propensity import PropensityBuild

HIGH = TIERS.index("high")
_WATCHED = """SELECT DISTINCT coalesce(conditions->>'target', 'purchase') FROM triggers
              WHERE kind = 'propensity_crossed'"""
_STAGE = "CREATE TEMP TABLE IF NOT EXISTS high_now (user_id text PRIMARY KEY) ON COMMIT DELETE ROWS"
_ARM = """
INSERT INTO trigger_pending (trigger_name, user_id, subject, started_at, last_at, due_at)
SELECT t.name, h.user_id, %(target)s, now(), now(), now() + t.delay_seconds * interval '1 second'
FROM high_now h
JOIN users u ON u.user_id = h.user_id
JOIN triggers t ON t.kind = 'propensity_crossed' AND coalesce(t.conditions->>'target', 'purchase') = %(target)s
WHERE NOT EXISTS (SELECT 1 FROM propensity_high_tiers p WHERE p.target = %(target)s AND p.user_id = h.user_id)
ORDER BY t.name, h.user_id
ON CONFLICT (trigger_name, user_id, subject) DO NOTHING
"""
_FORGET = "DELETE FROM propensity_high_tiers WHERE target = %(target)s"
_REMEMBER = """
INSERT INTO propensity_high_tiers (target, user_id)
SELECT %(target)s, h.user_id FROM high_now h JOIN users u ON u.user_id = h.user_id
"""


def high_tiers(build: PropensityBuild) -> dict[str, NDArray[np.object_]]:
    """Each scored target's shoppers in the `high` tier."""
    return {target: t.scores.user_ids[t.scores.tier == HIGH] for target, t in build.targets.items()}


def record_crossings(conn: psycopg.Connection[Any], high: dict[str, NDArray[np.object_]]) -> int:
    """Arm the watched targets' crossings and remember this rebuild's tiers; returns the rows armed."""
    watched = {row[0] for row in conn.execute(_WATCHED).fetchall()}
    armed = 0
    for target in sorted(watched & set(high)):
        with conn.transaction():
            conn.execute(_STAGE)
            with conn.cursor().copy("COPY high_now (user_id) FROM STDIN") as copy:
                for user_id in high[target].tolist():
                    copy.write_row((str(user_id),))
            had_baseline = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM propensity_high_tiers WHERE target = %s)", (target,)
            ).fetchone()
            if had_baseline and had_baseline[0]:
                armed += conn.execute(_ARM, {"target": target}).rowcount
            conn.execute(_FORGET, {"target": target})
            conn.execute(_REMEMBER, {"target": target})
    return armed
