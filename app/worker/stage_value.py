"""The customer-value stage of a rebuild: value every customer over the horizon, publish per-user values."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.propensity import percentiles
from app.settings import Settings
from app.store.versions import VersionWriter
from app.value.algo import ValueConfig, ValueResult, train_value
from app.value.service import VALUE_AUDIENCE, VALUE_PART
from app.worker.load import Snapshot


@dataclass
class ValueBuild:
    horizon_days: float
    result: ValueResult | None = None
    user_ids: NDArray[np.object_] = field(default_factory=lambda: np.zeros(0, dtype=object))
    percentile: NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    metrics: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, str]:
        """Nothing without a model: serving then answers 503 for value until one exists."""
        if self.result is None:
            return {}
        return {
            "value_horizon_days": str(self.horizon_days),
            "value_kind": self.result.kind,
            "value_new_customer": json.dumps(self.result.new_customer(self.horizon_days)),
        }

    def parts(self) -> tuple[list[str], list[str]]:
        """(per-user hashes, per-user sorted sets) this stage wrote, for erasure."""
        return ([VALUE_PART], [VALUE_AUDIENCE]) if self.result is not None else ([], [])


def build_value(snapshot: Snapshot, settings: Settings) -> ValueBuild:
    """Train, validate and predict; a shop without purchases yet gets no value model (recorded)."""
    build = ValueBuild(horizon_days=settings.value_horizon_days)
    try:
        result = train_value(snapshot.log, snapshot.now, ValueConfig(horizon_days=settings.value_horizon_days))
    except ValueError as exc:  # no customer yet: nothing to publish
        build.metrics = {"status": "skipped", "reason": str(exc)}
        return build
    build.result = result
    build.user_ids = snapshot.log.user_ids[result.predictions.users]
    build.percentile = percentiles(result.predictions.expected_revenue)
    build.metrics = result.metrics
    return build


def _records(build: ValueBuild) -> Any:
    """(user id, JSON) per customer: {"n": expected purchases, "r": expected revenue, "a": p_alive,
    "pc": percentile of expected revenue}."""
    assert build.result is not None
    p = build.result.predictions
    columns = zip(build.user_ids.tolist(), p.expected_purchases.tolist(), p.expected_revenue.tolist(),
                  p.p_alive.tolist(), build.percentile.tolist(), strict=True)  # fmt: skip
    for user, n, r, a, pc in columns:
        yield str(user), json.dumps({"n": round(n, 6), "r": round(r, 4), "a": round(a, 6), "pc": round(pc, 4)},
                                    separators=(",", ":"))  # fmt: skip


def publish_value(writer: VersionWriter, build: ValueBuild) -> None:
    """Per-customer values (hash) and the customers ranked by expected revenue (sorted set)."""
    if build.result is None:
        return
    writer.hash(VALUE_PART, _records(build))
    revenue = build.result.predictions.expected_revenue
    order = np.argsort(-revenue, kind="stable")
    writer.zset(VALUE_AUDIENCE, ((str(build.user_ids[k]), float(revenue[k])) for k in order))
